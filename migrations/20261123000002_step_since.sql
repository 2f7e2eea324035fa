-- When the current step's current attempt began: "waiting since".
ALTER TABLE sagas ADD COLUMN step_since timestamptz;
