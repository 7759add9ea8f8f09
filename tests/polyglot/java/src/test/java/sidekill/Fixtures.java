package sidekill;

import com.dylibso.chicory.wasm.Parser;
import com.dylibso.chicory.wasm.WasmModule;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeMap;
import java.util.stream.Stream;

/** Where the module and the vectors are, and canonical JSON for comparing answers. */
final class Fixtures {
  private Fixtures() {}

  /** The repository root: the {@code sidekill.repo} property Surefire sets, else ../../.. */
  static Path repo() {
    String prop = System.getProperty("sidekill.repo");
    return (prop != null ? Path.of(prop) : Path.of("../../..")).toAbsolutePath().normalize();
  }

  /** $SIDEKILL_WASM, default {@code <repo>/dist/raw/sidekill_policy.wasm}. */
  static Path wasm() {
    String env = System.getenv("SIDEKILL_WASM");
    return env != null && !env.isEmpty() ? Path.of(env) : repo().resolve("dist/raw/sidekill_policy.wasm");
  }

  /** $SIDEKILL_VECTORS_OUT, default {@code <repo>/dist/vectors}. */
  static Path vectorsDir() {
    String env = System.getenv("SIDEKILL_VECTORS_OUT");
    return env != null && !env.isEmpty() ? Path.of(env) : repo().resolve("dist/vectors");
  }

  private static WasmModule module;

  /** The parsed module, parsed once per test JVM. */
  static synchronized WasmModule module() {
    if (module == null) {
      module = Parser.parse(wasm());
    }
    return module;
  }

  /** A fresh instance of the module. */
  static SidekillPolicy fresh() {
    return new SidekillPolicy(module());
  }

  /** One vector: its name, the request bytes and the native core's answer bytes. */
  record Vector(String name, Path request, Path answer) {
    byte[] requestBytes() {
      return read(request);
    }

    byte[] answerBytes() {
      return read(answer);
    }
  }

  /** Every {@code <name>.request.json} with its {@code <name>.answer.json}, sorted by name. */
  static List<Vector> vectors() {
    Path dir = vectorsDir();
    List<Vector> out = new ArrayList<>();
    if (!Files.isDirectory(dir)) {
      return out;
    }
    try (Stream<Path> files = Files.list(dir)) {
      files
          .map(p -> p.getFileName().toString())
          .filter(n -> n.endsWith(".request.json"))
          .sorted()
          .forEach(
              n -> {
                String name = n.substring(0, n.length() - ".request.json".length());
                out.add(new Vector(name, dir.resolve(n), dir.resolve(name + ".answer.json")));
              });
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return out;
  }

  static byte[] read(Path path) {
    try {
      return Files.readAllBytes(path);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  // Strict: invalid UTF-8 and duplicate keys are errors, not silently repaired or merged.
  // Numbers keep their exact value (BigDecimal), so 1.10 and 1.1 stay the same number.
  private static final ObjectMapper JSON =
      new ObjectMapper()
          .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION)
          .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
          .enable(DeserializationFeature.USE_BIG_DECIMAL_FOR_FLOATS)
          .enable(DeserializationFeature.USE_BIG_INTEGER_FOR_INTS);

  /** Parses JSON bytes strictly. */
  static JsonNode parse(byte[] json) {
    try {
      return JSON.readTree(json);
    } catch (IOException e) {
      throw new AssertionError("not JSON: " + e.getMessage() + "\n" + preview(json), e);
    }
  }

  /** The JSON text with object keys sorted recursively and no insignificant whitespace. */
  static String canonical(byte[] json) {
    try {
      return JSON.writeValueAsString(sorted(parse(json)));
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  private static JsonNode sorted(JsonNode node) {
    if (node.isObject()) {
      TreeMap<String, JsonNode> fields = new TreeMap<>();
      node.fields().forEachRemaining(e -> fields.put(e.getKey(), sorted(e.getValue())));
      ObjectNode out = JSON.createObjectNode();
      fields.forEach(out::set);
      return out;
    }
    if (node.isArray()) {
      ArrayNode out = JSON.createArrayNode();
      node.forEach(item -> out.add(sorted(item)));
      return out;
    }
    return node;
  }

  static String preview(byte[] bytes) {
    String text = new String(bytes, StandardCharsets.UTF_8);
    return text.length() <= 400 ? text : text.substring(0, 400) + "...";
  }
}
