--! A parent row computes its aggregates when it is inserted. Usually that is
--! the aggregate of no rows; but Django's ForeignKeys are DEFERRABLE INITIALLY
--! DEFERRED, so fixtures and raw SQL may insert children first. Whatever value
--! the INSERT supplied for a derived column is replaced. The deltas a
--! deferred transaction parked for this key are dropped: the children they
--! describe are counted here already.
{{computations}}
RETURN NEW;
