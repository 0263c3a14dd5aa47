"""Small utilities every layer may use: range checks of configured numbers (:mod:`.numbers`), the
config field system (:mod:`.fields`), atomic files and durable JSONL (:mod:`.files`), stopping on
Ctrl-C without losing work (:mod:`.interrupt`), thread-safe ``ast.parse`` (:mod:`.python_ast`).
Nothing here imports the rest of the package."""
