"""``gcop serve openenv``: serve a GCoP task as an OpenEnv environment (HTTP + WebSocket).
``gcop serve chat``: serve a model (a local guide) as an OpenAI-compatible chat endpoint.

    gcop serve openenv GCoP-GSM8K-v0 --core anthropic:claude-haiku-4-5-20251001 --port 8000
    gcop serve chat hf:/path/to/guide --port 8001

Needs ``pip install 'gcop-env[openenv]'`` (OpenEnv and uvicorn; a venv of its own if verifiers
is installed too: their ``mcp`` pins conflict). See :mod:`gcop_env.adapters.openenv`.
"""

from __future__ import annotations

import argparse
import json
import sys

from gcop_env.cli.args import OneLineErrorParser, usage_error
from gcop_env.cli.exit_codes import EXIT_OK, EXIT_USAGE
from gcop_env.cores.models import DEFAULT_CORE


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="gcop serve", description="Serve GCoP tasks to other RL frameworks.")
    sub = parser.add_subparsers(dest="server", metavar="SERVER", parser_class=OneLineErrorParser)
    sub.required = True
    openenv = sub.add_parser("openenv", help="an OpenEnv environment server (HTTP and WebSocket)",
                             description="Serve a GCoP env id as an OpenEnv environment.")
    openenv.add_argument("env_id", nargs="?", default="GCoP-GSM8K-v0", help="the env id (default GCoP-GSM8K-v0)")
    openenv.add_argument("--core", default=DEFAULT_CORE, help=f"core spec (default {DEFAULT_CORE})")
    openenv.add_argument("--split", default="test", help="dataset split (default test)")
    openenv.add_argument("--data-files", default=None, help="local data files instead of the hub")
    openenv.add_argument("--limit", type=int, default=None, help="first N problems only")
    openenv.add_argument("--env-options", default="{}", metavar="JSON",
                         help='any other gym.make keywords as a JSON object, e.g. \'{"gamma": 0, "sandbox": "process"}\'')
    openenv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 in a container)")
    openenv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    openenv.add_argument("--max-concurrent-envs", type=int, default=64, help="WebSocket sessions at once (default 64)")
    openenv.add_argument("--log-level", default="info", help="uvicorn's log level (default info)")
    chat = sub.add_parser("chat", help="a model as an OpenAI-compatible chat endpoint (e.g. a local guide for vf-eval)",
                          description="Serve a model spec (hf:PATH, openai:..., anthropic:...) at /v1/chat/completions.")
    chat.add_argument("spec", help="the model spec, e.g. hf:/path/to/guide")
    chat.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    chat.add_argument("--port", type=int, default=8001, help="port (default 8001)")
    chat.add_argument("--max-tokens", type=int, default=512, help="reply budget when a request names none (default 512)")
    return parser


def serve_chat(args: argparse.Namespace) -> int:
    from gcop_env.cores import make_core
    from gcop_env.cores.chat_server import ChatServer

    if not 0 < args.port < 65536 or args.max_tokens < 1:
        return usage_error("gcop serve chat", "--port must be in 1..65535 and --max-tokens >= 1")
    try:
        core = make_core(args.spec, cache=False)
    except (KeyError, TypeError, ValueError) as exc:
        return usage_error("gcop serve chat", exc)
    server = ChatServer(core, model_name=args.spec, host=args.host, port=args.port, max_tokens=args.max_tokens)
    print(f"gcop serve chat: {args.spec} at {server.base_url}", flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
    return EXIT_OK


def serve_cli(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.server == "chat":
        return serve_chat(args)
    try:
        options = json.loads(args.env_options)
    except json.JSONDecodeError as exc:
        return usage_error("gcop serve openenv", f"--env-options is not JSON: {exc}")
    if not isinstance(options, dict):
        return usage_error("gcop serve openenv", f"--env-options must be a JSON object, got {type(options).__name__}")
    if args.limit is not None and args.limit < 1:
        return usage_error("gcop serve openenv", f"--limit must be >= 1, got {args.limit}")
    if not 0 < args.port < 65536 or args.max_concurrent_envs < 1:
        return usage_error("gcop serve openenv", "--port must be in 1..65535 and --max-concurrent-envs >= 1")
    try:
        import uvicorn

        from gcop_env.adapters.openenv import make_app
    except ImportError as exc:
        print(f"gcop serve openenv: error: {exc.name or exc} is not installed: pip install 'gcop-env[openenv]'",
              file=sys.stderr)
        return EXIT_USAGE
    make_kwargs = {**options, "core": args.core, "split": args.split, "data_files": args.data_files,
                   "limit": args.limit}
    from gymnasium.error import Error as GymError

    try:
        app = make_app(args.env_id, max_concurrent_envs=args.max_concurrent_envs, **make_kwargs)
    except (KeyError, TypeError, ValueError, GymError) as exc:  # unknown id or option, bad number: before listening
        message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"gcop serve openenv: error: {' '.join(message.split())}", file=sys.stderr)
        return EXIT_USAGE
    print(f"gcop serve openenv: {args.env_id} on http://{args.host}:{args.port} (WebSocket /ws, HTTP /reset /step)",
          flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return EXIT_OK
