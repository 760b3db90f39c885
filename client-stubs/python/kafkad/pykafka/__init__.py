"""A PyKafka-compatible layer over kafkad.

Code written for PyKafka 2.8 runs unchanged but for the import::

    from kafkad.pykafka import KafkaClient
    from kafkad.pykafka.partitioners import hashing_partitioner

    client = KafkaClient(hosts="127.0.0.1:9092")
    topic = client.topics[b"topicname"]
    with topic.get_producer(delivery_reports=True, partitioner=hashing_partitioner) as producer:
        producer.produce(b"msg", partition_key=b"bravo")
        msg, exc = producer.get_delivery_report(block=False, timeout=.1)

    consumer = topic.get_simple_consumer(consumer_group=b"charlie", auto_commit_enable=True)
    for msg in consumer:
        print(msg.value, msg.partition_id, msg.offset)

Consumers are the daemon's (kafkad.consumer): ``get_simple_consumer``,
``get_balanced_consumer(zookeeper_connect=...)`` (PyKafka's ZooKeeper
balancer, run by the daemon: it shares groups with PyKafka members) and
``get_balanced_consumer(managed=True)`` (Kafka-coordinated group).
"""

from .broker import Broker
from .client import Cluster, KafkaClient
from .common import CompressionType, OffsetType
from .consumer import BalancedConsumer, ManagedBalancedConsumer, SimpleConsumer
from .partition import Partition
from .producer import Producer
from .protocol import Message
from .topic import Topic

__version__ = "2.8.0+kafkad"

__all__ = [
    "Broker",
    "SimpleConsumer",
    "Cluster",
    "Partition",
    "Producer",
    "Topic",
    "KafkaClient",
    "BalancedConsumer",
    "ManagedBalancedConsumer",
    "Message",
    "CompressionType",
    "OffsetType",
]
