package sidekill;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.nio.file.Files;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/** Every shared vector through the wasm module agrees with the native core's answer. */
class VectorsTest {
  /** One instance for all vectors, as a host would keep one: it must serve call after call. */
  private final SidekillPolicy policy = Fixtures.fresh();

  @TestFactory
  Stream<DynamicTest> plan_matches_native_answer() {
    List<Fixtures.Vector> vectors = Fixtures.vectors();
    if (vectors.isEmpty()) {
      return Stream.of(
          DynamicTest.dynamicTest(
              "no vectors",
              () ->
                  fail(
                      "no *.request.json in "
                          + Fixtures.vectorsDir()
                          + ": run `cargo run -q -p sidekill-policy --example dump_vectors -- dist/vectors`")));
    }
    return vectors.stream()
        .map(
            v ->
                DynamicTest.dynamicTest(
                    v.name(),
                    () -> {
                      assertTrue(Files.exists(v.answer()), "missing " + v.answer());
                      String expected = Fixtures.canonical(v.answerBytes());
                      String actual = Fixtures.canonical(policy.plan(v.requestBytes()));
                      assertEquals(expected, actual, v.name() + ": wasm answer differs from native");
                    }));
  }
}
