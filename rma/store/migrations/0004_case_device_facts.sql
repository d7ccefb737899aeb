-- 0004: the device facts a vendor asks for (support-model.md section 5) as
-- the case opened: the token's model and firmware, and the device's
-- contract ID, so every desk's ticket carries them.
ALTER TABLE cases ADD COLUMN model TEXT NOT NULL DEFAULT '';
ALTER TABLE cases ADD COLUMN firmware TEXT NOT NULL DEFAULT '';
ALTER TABLE cases ADD COLUMN contract_id TEXT NOT NULL DEFAULT '';
