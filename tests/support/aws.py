"""AWS set-up and reads for the EventBridge tests, against moto on 127.0.0.1.

  aws.py setup BUS QUEUE      create the bus, a queue and a rule sending every
                              event from source "sagaplane" on the bus to the
                              queue; prints the queue URL
  aws.py receive QUEUE_URL N  prints the message bodies (one JSON per line)
                              received within 10 s until N distinct commands
                              came, deleting them
"""

import json
import sys
import time

import boto3


def client(service):
    return boto3.client(service)  # endpoint, region, keys: AWS_* variables


def setup(bus, queue):
    sqs = client("sqs")
    events = client("events")
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.create_event_bus(Name=bus)
    events.put_rule(Name="to-queue", EventBusName=bus, EventPattern=json.dumps({"source": ["sagaplane"]}))
    events.put_targets(Rule="to-queue", EventBusName=bus, Targets=[{"Id": "queue", "Arn": arn}])
    print(url)


def receive(url, n):
    """Delivery is at least once: a repeat (same CloudEvent id) is printed
    but counts once towards N."""
    sqs = client("sqs")
    seen = set()
    deadline = time.time() + 10
    while len(seen) < n and time.time() < deadline:
        out = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for m in out.get("Messages", []):
            body = m["Body"]
            try:
                seen.add(json.loads(body)["detail"]["id"])
            except (ValueError, KeyError, TypeError):
                seen.add(body)
            print(body.replace("\n", " "))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


if __name__ == "__main__":
    if sys.argv[1] == "setup":
        setup(sys.argv[2], sys.argv[3])
    else:
        receive(sys.argv[2], int(sys.argv[3]))
