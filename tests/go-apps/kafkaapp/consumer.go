//go:build !produceronly

package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/segmentio/kafka-go"
)

type header struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type line struct {
	Lib       string   `json:"lib"`
	Topic     string   `json:"topic"`
	Partition int      `json:"partition"`
	Offset    int64    `json:"offset"`
	Key       *string  `json:"key"`
	Value     string   `json:"value"`
	Headers   []header `json:"headers"`
}

var stdout sync.Mutex

func emit(l line) {
	b, _ := json.Marshal(l)
	stdout.Lock()
	os.Stdout.Write(append(b, '\n'))
	stdout.Unlock()
}

// process is the consumer's per-message work: one GET of the downstream URL,
// on the calling goroutine.
func process(downstream, lib string, partition int, offset int64) {
	if downstream == "" {
		return
	}
	resp, err := http.Get(downstream + "?lib=" + lib + "&partition=" + strconv.Itoa(partition) +
		"&offset=" + strconv.FormatInt(offset, 10))
	if err != nil {
		log.Printf("downstream: %v", err)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

func runConsumer(lib, brokers, topic, group, downstream string) {
	switch lib {
	case "sarama":
		consumeSarama(brokers, topic, group, downstream)
	case "kafkago":
		consumeKafkaGo(brokers, topic, group, downstream)
	default:
		log.Fatalf("-lib sarama|kafkago")
	}
}

type saramaHandler struct{ downstream string }

func (saramaHandler) Setup(s sarama.ConsumerGroupSession) error {
	log.Printf("sarama consumer: claims %v", s.Claims())
	return nil
}
func (saramaHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h saramaHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for msg := range claim.Messages() {
		process(h.downstream, "sarama", int(msg.Partition), msg.Offset)
		l := line{Lib: "sarama", Topic: msg.Topic, Partition: int(msg.Partition), Offset: msg.Offset,
			Key: keyHex(msg.Key), Value: hex.EncodeToString(msg.Value), Headers: []header{}}
		for _, rh := range msg.Headers {
			l.Headers = append(l.Headers, header{string(rh.Key), hex.EncodeToString(rh.Value)})
		}
		emit(l)
		sess.MarkMessage(msg, "")
	}
	return nil
}

func consumeSarama(brokers, topic, group, downstream string) {
	conf := sarama.NewConfig()
	conf.Consumer.Offsets.Initial = sarama.OffsetOldest
	conf.Consumer.Group.Rebalance.Strategy = sarama.NewBalanceStrategyRange()
	cg, err := sarama.NewConsumerGroup([]string{brokers}, group, conf)
	if err != nil {
		log.Fatalf("sarama consumer group: %v", err)
	}
	go func() {
		for err := range cg.Errors() {
			log.Printf("sarama consumer: %v", err)
		}
	}()
	log.Printf("kafkaapp consumer (sarama) on %s topic %s group %s", brokers, topic, group)
	for {
		if err := cg.Consume(context.Background(), []string{topic}, saramaHandler{downstream}); err != nil {
			log.Printf("sarama consume: %v", err)
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func consumeKafkaGo(brokers, topic, group, downstream string) {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:     []string{brokers},
		Topic:       topic,
		GroupID:     group,
		StartOffset: kafka.FirstOffset,
		MaxWait:     100 * time.Millisecond,
	})
	log.Printf("kafkaapp consumer (kafka-go) on %s topic %s group %s", brokers, topic, group)
	for {
		m, err := r.ReadMessage(context.Background())
		if err != nil {
			log.Fatalf("kafka-go read: %v", err)
		}
		process(downstream, "kafkago", m.Partition, m.Offset)
		l := line{Lib: "kafkago", Topic: m.Topic, Partition: m.Partition, Offset: m.Offset,
			Key: keyHex(m.Key), Value: hex.EncodeToString(m.Value), Headers: []header{}}
		for _, h := range m.Headers {
			l.Headers = append(l.Headers, header{h.Key, hex.EncodeToString(h.Value)})
		}
		emit(l)
	}
}
