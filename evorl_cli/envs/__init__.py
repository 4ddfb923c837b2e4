"""Environments: the population's vector env, batched classic control, optional EnvPool, toy tasks."""

from evorl_cli.envs.toy import register as _register_toys

_register_toys()
