-- 002_heartbeat_details: the details of an activity's last heartbeat, kept
-- across deliveries so a redelivered activity can resume from its progress.
ALTER TABLE activity_tasks ADD COLUMN heartbeat_details BLOB;
