"""`emaillog demo`: the service on demo data against an in-process Exchange simulator.

command.py  the command line and the orchestration: database, simulator, service, feeder
view.py     the live per-outcome view and how it is rendered (terminal or plain lines)
checks.py   what the database, metrics and simulator say against what the data expects:
            when the demo is drained, and the end summary with its checks
data.py     the demo's world: directory, sample messages and their expected outcomes
ui.py       the web UI's settings for the demo, with a token made for the run
"""

from pipeline.cli.demo.command import add_parser

__all__ = ["add_parser"]
