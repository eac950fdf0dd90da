"""Outbound: Moodle's BTEC grades written back to Zoho CRM, once each, through the outbox.

- ``selection``: per student x unit, the newest Moodle grade, what Zoho holds, the outbox row;
- ``payload``: the Zoho record a grade becomes (the mapping read in reverse) and its fingerprint;
- ``outbox``: the warehouse table's states (in flight, sent, failed, parked, conflict, resolved);
- ``writeback``: the decisions and the batches (Dagster wiring in ``defs/outbound/``).

No Dagster imports.
"""
