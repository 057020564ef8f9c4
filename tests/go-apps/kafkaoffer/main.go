// kafkaoffer: the test app of tests/e2e/tests/kafka_context.rs. It produces the
// messages it is told to with IBM/sarama's SyncProducer (its default protocol
// version) or segmentio/kafka-go's Writer, and calls Offer with each message's
// key, value and span context just before producing it: the test attaches a
// test-only uprobe there (uprobes/tests/kafka_offer/probe.bpf.c) that hands the
// context to the in-kernel insertion, as the real producer probes do. Its
// consume mode reads a topic back with kafka-go's Reader and prints every record.
//
//	kafkaoffer produce -brokers <addr> -topic <t> [-compression none|snappy|gzip]
//	    waits for "start" on stdin, connects both clients, prints "READY"; then
//	    each stdin line is one JSON batch {"client":"sarama"|"kafkago","msgs":
//	    [{"key":hex|null,"value":hex,"offer":traceparent|null,"own":traceparent|null}]}
//	    produced in one call (own: the app's own traceparent record header); it
//	    answers {"ok":true} or {"error":"..."}.
//	kafkaoffer consume -brokers <addr> -topic <t> -n <count>
//	    prints {"offset":o,"key":hex|null,"value":hex,"headers":[[k,hex v],...]}
//	    for the first n records of partition 0, then exits.
package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/IBM/sarama"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
)

type msgSpec struct {
	Key   *string `json:"key"`
	Value string  `json:"value"`
	Offer *string `json:"offer"`
	Own   *string `json:"own"`
}

type batch struct {
	Client string    `json:"client"`
	Msgs   []msgSpec `json:"msgs"`
}

// Offer is where the test's uprobe reads a message's key, value and span context
// (trace id, span id, flags: 25 bytes). Register ABI on amd64: key in AX/BX/CX,
// value in DI/SI/R8, ctx in R9.
//
//go:noinline
func Offer(key, value []byte, ctx *[25]byte) {
	offered++
}

var offered int

// parseTraceparent: "00-<32 hex>-<16 hex>-<2 hex>" as Offer's 25 bytes.
func parseTraceparent(tp string) (*[25]byte, error) {
	var c [25]byte
	if len(tp) != 55 {
		return nil, fmt.Errorf("traceparent %q: not 55 bytes", tp)
	}
	for _, f := range []struct {
		from, to, at int
	}{{3, 35, 0}, {36, 52, 16}, {53, 55, 24}} {
		if _, err := hex.Decode(c[f.at:], []byte(tp[f.from:f.to])); err != nil {
			return nil, fmt.Errorf("traceparent %q: %v", tp, err)
		}
	}
	return &c, nil
}

func decodeMsg(m msgSpec) (key, value []byte, err error) {
	if m.Key != nil {
		if key, err = hex.DecodeString(*m.Key); err != nil {
			return nil, nil, err
		}
		if key == nil {
			key = []byte{}
		}
	}
	value, err = hex.DecodeString(m.Value)
	return key, value, err
}

func offer(m msgSpec, key, value []byte) error {
	if m.Offer == nil {
		return nil
	}
	c, err := parseTraceparent(*m.Offer)
	if err != nil {
		return err
	}
	Offer(key, value, c)
	return nil
}

func produce(brokers, topic, compression string) {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	if !in.Scan() || in.Text() != "start" {
		fmt.Fprintln(os.Stderr, "expected start")
		os.Exit(2)
	}
	cfg := sarama.NewConfig() // its default protocol version
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Flush.Frequency = 5 * time.Millisecond
	var kc kafka.Compression
	switch compression {
	case "none":
	case "snappy":
		cfg.Producer.Compression = sarama.CompressionSnappy
		kc = compress.Snappy
	case "gzip":
		cfg.Producer.Compression = sarama.CompressionGZIP
		kc = compress.Gzip
	default:
		fmt.Fprintln(os.Stderr, "unknown compression", compression)
		os.Exit(2)
	}
	sp, err := sarama.NewSyncProducer([]string{brokers}, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sarama:", err)
		os.Exit(1)
	}
	defer sp.Close()
	w := &kafka.Writer{
		Addr:         kafka.TCP(brokers),
		Topic:        topic,
		Balancer:     &kafka.LeastBytes{},
		BatchSize:    1000,
		BatchTimeout: 5 * time.Millisecond,
		RequiredAcks: kafka.RequireAll,
		Compression:  kc,
	}
	defer w.Close()
	fmt.Println("READY")
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var b batch
		if err := json.Unmarshal(in.Bytes(), &b); err != nil {
			out.Encode(map[string]string{"error": err.Error()})
			continue
		}
		if err := send(sp, w, topic, b); err != nil {
			out.Encode(map[string]string{"error": err.Error()})
			continue
		}
		out.Encode(map[string]bool{"ok": true})
	}
}

func send(sp sarama.SyncProducer, w *kafka.Writer, topic string, b batch) error {
	switch b.Client {
	case "sarama":
		var msgs []*sarama.ProducerMessage
		for _, m := range b.Msgs {
			key, value, err := decodeMsg(m)
			if err != nil {
				return err
			}
			pm := &sarama.ProducerMessage{Topic: topic, Partition: 0, Value: sarama.ByteEncoder(value)}
			if key != nil {
				pm.Key = sarama.ByteEncoder(key)
			}
			if m.Own != nil {
				pm.Headers = []sarama.RecordHeader{{Key: []byte("traceparent"), Value: []byte(*m.Own)}}
			}
			if err := offer(m, key, value); err != nil {
				return err
			}
			msgs = append(msgs, pm)
		}
		return sp.SendMessages(msgs)
	case "kafkago":
		var msgs []kafka.Message
		for _, m := range b.Msgs {
			key, value, err := decodeMsg(m)
			if err != nil {
				return err
			}
			km := kafka.Message{Key: key, Value: value}
			if m.Own != nil {
				km.Headers = []kafka.Header{{Key: "traceparent", Value: []byte(*m.Own)}}
			}
			if err := offer(m, key, value); err != nil {
				return err
			}
			msgs = append(msgs, km)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return w.WriteMessages(ctx, msgs...)
	}
	return fmt.Errorf("unknown client %q", b.Client)
}

func consume(brokers, topic string, n int) {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:   []string{brokers},
		Topic:     topic,
		Partition: 0,
		MaxWait:   100 * time.Millisecond,
	})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out := json.NewEncoder(os.Stdout)
	for i := 0; i < n; i++ {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			fmt.Fprintln(os.Stderr, "read:", err)
			os.Exit(1)
		}
		var key *string
		if m.Key != nil {
			k := hex.EncodeToString(m.Key)
			key = &k
		}
		headers := [][2]string{}
		for _, h := range m.Headers {
			headers = append(headers, [2]string{h.Key, hex.EncodeToString(h.Value)})
		}
		out.Encode(map[string]any{"offset": m.Offset, "key": key, "value": hex.EncodeToString(m.Value), "headers": headers})
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kafkaoffer produce|consume ...")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "bootstrap address")
	topic := fs.String("topic", "", "topic")
	compression := fs.String("compression", "none", "none, snappy or gzip")
	n := fs.Int("n", 0, "records to consume")
	fs.Parse(os.Args[2:])
	switch os.Args[1] {
	case "produce":
		produce(*brokers, *topic, *compression)
	case "consume":
		consume(*brokers, *topic, *n)
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", os.Args[1])
		os.Exit(2)
	}
}
