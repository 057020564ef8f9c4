//go:build produceronly

package main

import "log"

// Built with -tags produceronly (bench/kafka.py): the producer service alone, as
// a service that only produces is linked — without sarama's and kafka-go's
// consumer code, so gosight attaches no consumer probe to it.
func runConsumer(lib, brokers, topic, group, downstream string) {
	log.Fatalf("kafkaapp built with -tags produceronly: no consumer role")
}
