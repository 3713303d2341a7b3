"""`peregrine rules backtest`: a rules change evaluated against the retained `peregrine.events`.

A room that reads the bus as the worker does (decode, enrich, evaluate), but never writes to it:
no produced record, no committed offset. `read` plans and reads partition spans by timestamp,
`compare` turns two rule sets' alerts into per-rule differences, `job` runs both over the spans in
one or more processes, `report` renders the result, `cli` is the command.
"""
