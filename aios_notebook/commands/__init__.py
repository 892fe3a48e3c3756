"""The command line's own commands: streaming from a server into a recording (``record``) and
serving one (``replay``), with what they share (the first connection must succeed, progress lines).

They sit at the top with ``cli.py``, which declares their options: they wire the client (which
streams) to the recording writer and the replay servers (``server/replay*.py``). Layers below
import none of this.
"""
