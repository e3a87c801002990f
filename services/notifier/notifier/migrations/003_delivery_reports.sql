-- What the notifier last told posts about the messages of each post (DeliveryReport). A report is
-- final once nothing is pending or held: the job stops looking at that notification.
CREATE SEQUENCE delivery_report_revisions;

CREATE TABLE delivery_reports (
    notification_id uuid PRIMARY KEY REFERENCES notifications,
    targeted        int NOT NULL,
    delivered_email int NOT NULL,
    delivered_push  int NOT NULL,
    failed          int NOT NULL,
    pending         int NOT NULL,
    held            int NOT NULL,
    final           boolean NOT NULL,
    revision        bigint NOT NULL,
    reported_at     timestamptz NOT NULL DEFAULT now()
);

-- The report job reads the recent notifications.
CREATE INDEX notifications_created ON notifications (created_at);
CREATE INDEX deliveries_notification ON deliveries (notification_id);
