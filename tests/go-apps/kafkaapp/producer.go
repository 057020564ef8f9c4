package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
)

type pair struct {
	key   []byte // nil: no key
	value []byte
}

type result struct {
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
}

// pairs reads the repeated hex `key` and `value` parameters (`key=-`: nil key).
func pairs(r *http.Request) ([]pair, error) {
	q := r.URL.Query()
	keys, values := q["key"], q["value"]
	if len(keys) != len(values) || len(keys) == 0 {
		return nil, fmt.Errorf("need as many key as value parameters (and at least one)")
	}
	var out []pair
	for i := range keys {
		var p pair
		if keys[i] != "-" {
			k, err := hex.DecodeString(keys[i])
			if err != nil {
				return nil, fmt.Errorf("key %d: %v", i, err)
			}
			p.key = k
		}
		v, err := hex.DecodeString(values[i])
		if err != nil {
			return nil, fmt.Errorf("value %d: %v", i, err)
		}
		p.value = v
		out = append(out, p)
	}
	return out, nil
}

func saramaMessage(topic string, p pair) *sarama.ProducerMessage {
	m := &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(p.value)}
	if p.key != nil {
		m.Key = sarama.ByteEncoder(p.key)
	}
	return m
}

func runProducer(listen, brokers, redisAddr string) {
	conf := sarama.NewConfig() // the library's default Kafka version
	conf.Producer.Return.Successes = true
	conf.Producer.Return.Errors = true
	conf.Producer.RequiredAcks = sarama.WaitForAll
	conf.Producer.Partitioner = sarama.NewHashPartitioner
	addrs := []string{brokers}
	syncP, err := sarama.NewSyncProducer(addrs, conf)
	if err != nil {
		log.Fatalf("sarama sync producer: %v", err)
	}
	snappyConf := *conf
	snappyConf.Producer.Compression = sarama.CompressionSnappy
	snappyP, err := sarama.NewSyncProducer(addrs, &snappyConf)
	if err != nil {
		log.Fatalf("sarama snappy producer: %v", err)
	}
	asyncP, err := sarama.NewAsyncProducer(addrs, conf)
	if err != nil {
		log.Fatalf("sarama async producer: %v", err)
	}
	// The async producer's outcomes go back to the handler that produced the
	// message, through the channel in its Metadata.
	go func() {
		for m := range asyncP.Successes() {
			m.Metadata.(chan error) <- nil
		}
	}()
	go func() {
		for e := range asyncP.Errors() {
			e.Msg.Metadata.(chan error) <- e.Err
		}
	}()
	writer := &kafka.Writer{
		Addr:         kafka.TCP(brokers),
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: 5 * time.Millisecond,
		// bench/kafka.py produces to topics nobody created (the broker
		// creates them); the tests create theirs first.
		AllowAutoTopicCreation: true,
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/sarama/sync", saramaSync(syncP))
	// Snappy batches: the kernel leaves compressed batches untouched (no
	// traceparent header), so their consumers' spans get links instead.
	mux.HandleFunc("/sarama/snappy", saramaSync(snappyP))
	mux.HandleFunc("/sarama/async", func(w http.ResponseWriter, r *http.Request) {
		topic := r.URL.Query().Get("topic")
		ps, err := pairs(r)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		var msgs []*sarama.ProducerMessage
		for _, p := range ps {
			m := saramaMessage(topic, p)
			m.Metadata = make(chan error, 1)
			asyncP.Input() <- m
			msgs = append(msgs, m)
		}
		var out []result
		for _, m := range msgs {
			if err := <-m.Metadata.(chan error); err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			out = append(out, result{m.Partition, m.Offset})
		}
		reply(w, out)
	})
	mux.HandleFunc("/kafkago", func(w http.ResponseWriter, r *http.Request) {
		topic := r.URL.Query().Get("topic")
		ps, err := pairs(r)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		var msgs []kafka.Message
		for _, p := range ps {
			msgs = append(msgs, kafka.Message{Topic: topic, Key: p.key, Value: p.value})
		}
		ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
		defer cancel()
		if err := writer.WriteMessages(ctx, msgs...); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		var out []result
		for range msgs {
			out = append(out, result{-1, -1})
		}
		reply(w, out)
	})
	if redisAddr != "" {
		rdb := redis.NewClient(&redis.Options{Addr: redisAddr, Protocol: 2, MaxRetries: -1})
		mux.HandleFunc("/order", orderHandler(rdb, syncP, writer))
	}
	mux.HandleFunc("/downstream", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		log.Fatalf("listen: %v", err)
	}
	log.Printf("kafkaapp producer (brokers %s) listening on %s", brokers, ln.Addr())
	log.Fatal(http.Serve(ln, mux))
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	b, _ := json.Marshal(v)
	w.Write(b)
}

// keyHex is a key for the consumer's JSON line: hex, or null for a nil key.
func keyHex(k []byte) *string {
	if k == nil {
		return nil
	}
	s := hex.EncodeToString(k)
	return &s
}

// saramaSync produces each request's messages through syncP: one SendMessage, or
// SendMessages for several.
func saramaSync(syncP sarama.SyncProducer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		topic := r.URL.Query().Get("topic")
		ps, err := pairs(r)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		var out []result
		if len(ps) == 1 {
			part, off, err := syncP.SendMessage(saramaMessage(topic, ps[0]))
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			out = append(out, result{part, off})
		} else {
			var msgs []*sarama.ProducerMessage
			for _, p := range ps {
				msgs = append(msgs, saramaMessage(topic, p))
			}
			if err := syncP.SendMessages(msgs); err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			for _, m := range msgs {
				out = append(out, result{m.Partition, m.Offset})
			}
		}
		reply(w, out)
	}
}
