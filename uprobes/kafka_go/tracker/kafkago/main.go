// Command kafkago is what offsets-tracker builds against every kafka-go release
// to read its struct layouts from DWARF: a Writer (Message, protocol.Header) and
// a consumer-group Reader (Reader, ReaderConfig, readerMessage). Nothing
// connects unless -brokers is given.
package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/segmentio/kafka-go"
)

func main() {
	brokers := flag.String("brokers", "", "Kafka bootstrap address")
	flag.Parse()
	if *brokers == "" {
		return
	}
	w := &kafka.Writer{Addr: kafka.TCP(*brokers), Topic: "t"}
	fmt.Println(w.WriteMessages(context.Background(), kafka.Message{Key: []byte("k"), Value: []byte("v"),
		Headers: []kafka.Header{{Key: "h", Value: []byte("v")}}}))
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{*brokers}, Topic: "t", GroupID: "g"})
	m, err := r.FetchMessage(context.Background())
	fmt.Println(m.Topic, m.Partition, m.Offset, string(m.Key), m.Headers, err)
}
