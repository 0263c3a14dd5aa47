"""Adapters that let other RL libraries drive the environment, one small module each.

* :mod:`gcop_env.adapters.trl`   TRL ``GRPOTrainer(environment_factory=...)`` (or ``reward_funcs`` with a plain template)
* :mod:`gcop_env.adapters.gem`   GEM (``gem.Env``: constructor takes ``seed``; step info kept through autoreset)
* :mod:`gcop_env.adapters.skyrl` SkyRL-gym (``BaseTextEnv``: ``init`` from ``extras["task_id"]``)

Each imports its library only when used; the libraries are the optional extra ``gcop-env[adapters]``
(TRL comes with ``[train]``).
"""
