"""DAP evaluation harness: plan -> repeated blocked temporal splits -> streaming scores -> ledger + report.

Modules: :mod:`plan` (schema, hash), :mod:`splits` (blocks, folds, embargo), :mod:`runner`
(prepare, run one split, evaluate), :mod:`results` (labelled Dataset, intervals, paired
comparison), :mod:`ledger` (append-only JSON lines), :mod:`report` (HTML + PNG),
:mod:`verify` (recompute one split and compare).
"""
