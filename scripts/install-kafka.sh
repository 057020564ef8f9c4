#!/usr/bin/env bash
# Installs (once) and caches an Apache Kafka broker for the Kafka end-to-end
# tests: the release's jars and their runtime dependencies resolved from Maven
# Central by Maven (a generated pom + dependency:copy-dependencies), run with the
# machine's Java 17 in KRaft mode (no ZooKeeper). tests/e2e/src/kafka.rs starts a
# private broker per test from this directory.
#
# Usage:   GOSIGHT_KAFKA_DIR=$(bash scripts/install-kafka.sh | tail -1)
#
# The last line of stdout is the install directory (libs/ holds every jar: the
# broker is `java -cp 'libs/*' kafka.Kafka server.properties`, storage is
# formatted with `kafka.tools.StorageTool format --standalone`). Logs go to
# stderr. A warm cache answers at once; a cold install takes ~15 s with a warm
# ~/.m2 (a minute or so downloading ~90 jars otherwise).
# Installs Java 17 (headless JRE) and Maven from Debian when missing.
#
# Environment:
#   GOSIGHT_CACHE_DIR   cache root (default: $HOME/.cache/gosight)
set -euo pipefail

KAFKA_VERSION=4.1.1
# Kafka 4.1 logs through slf4j 2 to log4j 2; Maven's nearest-wins resolution
# would otherwise pick an slf4j-api 1.7 from kafka-tools' dependencies.
SLF4J_VERSION=2.0.17
LOG4J_VERSION=2.24.3

CACHE=${GOSIGHT_CACHE_DIR:-$HOME/.cache/gosight}
DEST=$CACHE/kafka/$KAFKA_VERSION
STAMP=$DEST/.complete

log() { printf 'install-kafka: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

need=()
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
bash "$(dirname "$0")/apt-install.sh" "${need[@]}"
command -v java >/dev/null 2>&1 || die "java not found"
java_major=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
((${java_major:-0} >= 17)) || die "Kafka $KAFKA_VERSION needs Java 17 or newer (found ${java_major:-none})"

if [[ -f $STAMP && -f $DEST/libs/kafka_2.13-$KAFKA_VERSION.jar ]]; then
    log "cached: Kafka $KAFKA_VERSION in $DEST"
    printf '%s\n' "$DEST"
    exit 0
fi

mkdir -p "$DEST"
exec 9>"$DEST/.lock"
if ! flock -n 9; then
    log "another install is running; waiting for $DEST/.lock"
    flock 9
fi
if [[ -f $STAMP ]]; then
    printf '%s\n' "$DEST"
    exit 0
fi

WORK=$(mktemp -d "$DEST/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cat >"$WORK/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>gosight.test</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <!-- the broker (kafka.Kafka, kafka.tools.StorageTool) -->
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <!-- the command-line tools (TopicCommand, ConsoleConsumer) for debugging by hand -->
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>$SLF4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
POM
start=$SECONDS
log "resolving org.apache.kafka:kafka_2.13:$KAFKA_VERSION and its runtime dependencies from Maven Central"
(cd "$WORK" && mvn -q -B dependency:copy-dependencies -DoutputDirectory=libs -DincludeScope=runtime) >&2 ||
    die "maven could not resolve Kafka $KAFKA_VERSION"
[[ -f $WORK/libs/kafka_2.13-$KAFKA_VERSION.jar ]] || die "kafka_2.13-$KAFKA_VERSION.jar missing after resolution"
# Only the broker's own logger says when it has started; the rest stays at warn.
cat >"$WORK/log4j2.properties" <<'LOG'
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = out
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = info
LOG
# The broker must start: one StorageTool run proves the classpath is whole.
java -cp "$WORK/libs/*" kafka.tools.StorageTool version >/dev/null 2>&1 ||
    java -cp "$WORK/libs/*" kafka.tools.StorageTool --help >/dev/null 2>&1 ||
    die "kafka.tools.StorageTool does not run from the resolved jars"
rm -rf "$DEST/libs"
mv "$WORK/libs" "$DEST/libs"
mv "$WORK/log4j2.properties" "$DEST/log4j2.properties"
printf '%s\n' "$KAFKA_VERSION" >"$DEST/VERSION"
touch "$STAMP"
log "installed Kafka $KAFKA_VERSION in $((SECONDS - start))s: $DEST"
printf '%s\n' "$DEST"
