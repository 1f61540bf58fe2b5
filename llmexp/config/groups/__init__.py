"""One module per config group: its dataclass(es), with choices typed beside their fields, and
the rules that involve that group alone (`check_<group>`). Rules spanning groups: ../rules.py."""
