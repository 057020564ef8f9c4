// Command sarama is what offsets-tracker builds against every sarama release to
// read its struct layouts from DWARF: a SyncProducer, an AsyncProducer and a
// ConsumerGroup, so that the producer's messages and batches (ProducerMessage,
// produceSet) and the consumer's (ConsumerMessage, RecordHeader,
// partitionConsumer, brokerConsumer, Broker) are linked. Nothing connects
// unless -brokers is given.
package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/IBM/sarama"
)

type handler struct{}

func (handler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (handler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		for _, h := range m.Headers {
			fmt.Println(string(h.Key), string(h.Value))
		}
		fmt.Println(m.Topic, m.Partition, m.Offset, string(m.Key))
		s.MarkMessage(m, "")
	}
	return nil
}

func main() {
	brokers := flag.String("brokers", "", "Kafka bootstrap address")
	flag.Parse()
	if *brokers == "" {
		return
	}
	conf := sarama.NewConfig()
	conf.Producer.Return.Successes = true
	sp, err := sarama.NewSyncProducer([]string{*brokers}, conf)
	if err != nil {
		return
	}
	fmt.Println(sp.SendMessage(&sarama.ProducerMessage{Topic: "t", Key: sarama.StringEncoder("k"), Value: sarama.ByteEncoder("v")}))
	ap, err := sarama.NewAsyncProducer([]string{*brokers}, conf)
	if err != nil {
		return
	}
	ap.Input() <- &sarama.ProducerMessage{Topic: "t", Value: sarama.StringEncoder("v")}
	fmt.Println(<-ap.Successes())
	cg, err := sarama.NewConsumerGroup([]string{*brokers}, "g", conf)
	if err != nil {
		return
	}
	fmt.Println(cg.Consume(context.Background(), []string{"t"}, handler{}))
}
