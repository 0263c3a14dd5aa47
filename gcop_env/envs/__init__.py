"""The Gymnasium surface: the environment (:mod:`.env`), the native vector env (:mod:`.vector`),
the text spaces (:mod:`.spaces`), the infra-aware wrappers (:mod:`.wrappers`) and the task
registry behind ``gym.make("GCoP-<Task>-v0")`` (:mod:`.tasks`). A new task is a validator
(``validators/``) registered here with :func:`gcop_env.register_task`."""
