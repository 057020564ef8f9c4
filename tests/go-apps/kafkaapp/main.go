// kafkaapp: a Kafka producer service (that also uses Redis, for /order) and a Kafka consumer service in one binary
// (`-role producer|consumer`), for gosight's Kafka probes (tests/e2e/tests/kafka.rs).
// How and where the libraries are probed: PROBING.md.
//
// Producer (`-role producer -addr ADDR -brokers B`, printing `listening on <addr>`): an HTTP server whose
// handlers produce, on the handler's goroutine, the messages given as repeated
// hex-encoded `key` and `value` query parameters (`key=-` is a nil key) to
// `topic`:
//
//	/sarama/sync     sarama SyncProducer: SendMessage (one pair) or SendMessages
//	/sarama/snappy   as /sarama/sync, with snappy-compressed batches
//	/sarama/async    sarama AsyncProducer: Input() <- each, waits for its success
//	/kafkago         kafka-go Writer: one WriteMessages with every pair
//	/order           with -redis ADDR: an order's whole path, Redis then one
//	                 message (order.go)
//	/downstream      answers 200 (the consumer's downstream call)
//
// Each answers a JSON array of {"partition","offset"} (offset -1 when the library
// does not say).
//
// Consumer (`-role consumer -brokers B -topic T -group G -lib sarama|kafkago
// -downstream URL [-start-after D]`): a sarama ConsumerGroup (ConsumeClaim loop, MarkMessage after
// each) or a kafka-go Reader with GroupID (ReadMessage loop), from the oldest
// offset. Per message it does one HTTP GET of URL on the goroutine that
// processes the message, then prints one JSON line on stdout:
// {"lib","topic","partition","offset","key" (hex, null for nil),"value" (hex),
// "headers":[{"key","value" (hex)}]}.
package main

import (
	"flag"
	"log"
	"time"
)

func main() {
	role := flag.String("role", "", "producer or consumer")
	addr := flag.String("addr", "127.0.0.1:8080", "producer: HTTP address")
	redisAddr := flag.String("redis", "", "producer: Redis address for /order (none: no /order)")
	brokers := flag.String("brokers", "127.0.0.1:9092", "Kafka bootstrap address")
	topic := flag.String("topic", "", "consumer: topic")
	group := flag.String("group", "kafkaapp", "consumer: group id")
	lib := flag.String("lib", "sarama", "consumer: sarama or kafkago")
	downstream := flag.String("downstream", "", "consumer: URL to GET per message")
	startAfter := flag.Duration("start-after", 0, "consumer: wait this long before consuming")
	flag.Parse()
	switch *role {
	case "producer":
		runProducer(*addr, *brokers, *redisAddr)
	case "consumer":
		time.Sleep(*startAfter)
		runConsumer(*lib, *brokers, *topic, *group, *downstream)
	default:
		log.Fatalf("-role producer|consumer")
	}
}
