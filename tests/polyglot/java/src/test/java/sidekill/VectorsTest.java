package sidekill;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.nio.file.Files;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * Every shared vector through the wasm module agrees with the native core's answer: in chicory's
 * interpreter (the module file, {@link SidekillPolicy#load}) and in the classes chicory's
 * build-time compiler made of the same module ({@link SidekillBundled}).
 */
class VectorsTest {
  @TestFactory
  Stream<DynamicTest> plan_matches_native_answer() {
    return vectors(Fixtures.fresh());
  }

  @TestFactory
  Stream<DynamicTest> bundled_module_matches_native_answer() {
    return vectors(SidekillBundled.create());
  }

  /** One instance for all vectors, as a host would keep one: it must serve call after call. */
  private static Stream<DynamicTest> vectors(SidekillPolicy policy) {
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
