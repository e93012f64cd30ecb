#!/usr/bin/env bash
# Proves the contract is usable from another language: generates Java from
# proto/ with protoc and compiles it against protobuf-java (Debian's
# protobuf-compiler, libprotobuf-java and openjdk-17-jdk-headless), then
# round-trips a message written by the TypeScript code through the Java
# classes.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
jar=/usr/share/java/protobuf.jar

protoc --version
mkdir -p "$work/src"
# buf's image carries the well-known types' descriptors that cache.proto imports.
(cd "$repo" && npx buf build -o "$work/image.binpb")
protoc --descriptor_set_in="$work/image.binpb" --java_out="$work/src" llmcache/v1/cache.proto
cat > "$work/src/RoundTrip.java" <<'JAVA'
import dev.llmcache.v1.Generation;
import dev.llmcache.v1.LookupResponse;
import java.nio.file.Files;
import java.nio.file.Path;

/** Reads a LookupResponse written by the TypeScript code, checks it, and writes it back. */
public class RoundTrip {
  public static void main(String[] args) throws Exception {
    LookupResponse response = LookupResponse.parseFrom(Files.readAllBytes(Path.of(args[0])));
    Generation generation = response.getGenerations(0);
    if (!response.getHit() || !generation.getText().equals("Paris")
        || generation.getMessage().getToolCalls(0).getArgs().getFieldsOrThrow("days").getNumberValue() != 3) {
      throw new AssertionError("unexpected message: " + response);
    }
    Files.write(Path.of(args[1]), response.toByteArray());
  }
}
JAVA
mkdir -p "$work/classes"
javac -nowarn -cp "$jar" -d "$work/classes" $(find "$work/src" -name '*.java')
echo "compiled $(find "$work/classes" -name '*.class' | wc -l) Java classes from cache.proto"
node "$repo/scripts/lookup-response-sample.mjs" > "$work/sample.bin"
java -cp "$jar:$work/classes" RoundTrip "$work/sample.bin" "$work/back.bin"
cmp "$work/sample.bin" "$work/back.bin"
echo "Java read a LookupResponse written in TypeScript and wrote the same bytes back"
