-- 0002: where each device's token was last read: its PKCS#11 module, slot
-- ID and label, on the device's current serial record. After a restart the
-- probe attributes a token whose serial cannot be read (C_GetTokenInfo
-- fails) to the device last read in that slot: a hint, since devices are
-- matched by serial, never by slot ID alone (slot IDs move). slot_id is NULL
-- until the token was read; it holds a CK_SLOT_ID as a signed 64-bit value.
ALTER TABLE device_serials ADD COLUMN module TEXT NOT NULL DEFAULT '';
ALTER TABLE device_serials ADD COLUMN slot_id INTEGER;
ALTER TABLE device_serials ADD COLUMN label TEXT NOT NULL DEFAULT '';
