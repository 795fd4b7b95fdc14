"""What every Samenloop party shares.

Public modules: ``crypto`` (pseudonymise, seal, open), ``checkpoint`` (signed
checkpoints), ``errors``, ``rpc`` (status mapping, identity, channels), ``config``,
``log``, ``vocab`` and the generated contract in ``v1``. Modules starting with an
underscore are private.
"""
