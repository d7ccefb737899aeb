-- 0003: what the RMA flows add to a case (issue 10): the tracking number of
-- the flow's last shipment, and when the device stopped showing the fault
-- (NULL while it shows it). Every value is also in the case's event log.
ALTER TABLE cases ADD COLUMN tracking TEXT NOT NULL DEFAULT '';
ALTER TABLE cases ADD COLUMN cleared_at TEXT;
