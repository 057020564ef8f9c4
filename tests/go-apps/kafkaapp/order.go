package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
)

// orderHandler serves /order?id=N&topic=T&lib=sarama|kafkago&value=V (hex): the
// whole path of one order, on the handler's goroutine with the request's
// context — Redis first (GET order:N, missing on a new order; a MULTI/EXEC that
// counts it and stores it; a pipeline that reads it back and sets its expiry),
// then one message, key `order-N`, value V, produced to T through sarama's
// SyncProducer or kafka-go's Writer. It answers like the producer routes.
func orderHandler(rdb *redis.Client, syncP sarama.SyncProducer, writer *kafka.Writer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		ctx := r.Context()
		id, topic := q.Get("id"), q.Get("topic")
		ps, err := pairs(r)
		if err != nil || len(ps) != 1 {
			http.Error(w, fmt.Sprint("one value: ", err), 400)
			return
		}
		key := "order:" + id
		if err := rdb.Get(ctx, key).Err(); !errors.Is(err, redis.Nil) {
			http.Error(w, fmt.Sprint("order exists or redis failed: ", err), 409)
			return
		}
		if _, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Incr(ctx, "orders:count")
			p.Set(ctx, key, ps[0].value, 0)
			return nil
		}); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Get(ctx, key)
			p.Expire(ctx, key, time.Hour)
			return nil
		}); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		msgKey := []byte("order-" + id)
		switch q.Get("lib") {
		case "sarama":
			part, off, err := syncP.SendMessage(saramaMessage(topic, pair{msgKey, ps[0].value}))
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			reply(w, []result{{part, off}})
		case "kafkago":
			ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			if err := writer.WriteMessages(ctx, kafka.Message{Topic: topic, Key: msgKey, Value: ps[0].value}); err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			reply(w, []result{{-1, -1}})
		default:
			http.Error(w, "lib: sarama or kafkago", 400)
		}
	}
}
