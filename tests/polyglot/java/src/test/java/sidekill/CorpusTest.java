package sidekill;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.dylibso.chicory.runtime.ImportValues;
import com.dylibso.chicory.runtime.Instance;
import com.dylibso.chicory.wasm.Parser;
import com.dylibso.chicory.wasm.WasmModule;
import com.dylibso.chicory.wasm.types.MemoryLimits;
import com.fasterxml.jackson.databind.JsonNode;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * Issue 17: every module of the hostile corpus (host/tests/modules/corpus.json) loaded by this
 * loader: each gives a clean exception, an answer, or is stopped by this test's bound, and never
 * takes the test JVM down.
 *
 * <p>The loader's own bounds: none for time (chicory runs a call to its end; a module that loops,
 * in its start function or in a call, runs for ever unless its thread is interrupted, which
 * chicory checks) and, for memory, the instance's memory limits (the loader takes a built
 * {@code Instance}; chicory's default lets a memory grow to 4 GiB, in the Java heap). So each
 * module runs in a thread of its own, with an instance built with a 256 MiB memory limit, and
 * this test interrupts it after 10 s of wall-clock time; a module stopped so is a timeout, which
 * is what this loader does with a module that never returns.
 */
class CorpusTest {
  private static final Set<String> HANGS =
      Set.of("loop_plan.wasm", "grow_plan.wasm", "start_loop.wasm");
  private static final long SECONDS = 10;

  @TestFactory
  List<DynamicTest> every_corpus_module_leaves_the_loader_standing() {
    Path corpus = Fixtures.repo().resolve("host/tests/modules");
    JsonNode manifest = Fixtures.parse(Fixtures.read(corpus.resolve("corpus.json")));
    byte[] request = manifest.get("request").toString().getBytes(StandardCharsets.UTF_8);
    List<DynamicTest> tests = new ArrayList<>();
    for (JsonNode m : manifest.get("modules")) {
      String file = m.get("file").asText();
      if (file.equals("embedded")) {
        continue;
      }
      tests.add(DynamicTest.dynamicTest(file, () -> run(corpus.resolve(file), file, request)));
    }
    return tests;
  }

  private static void run(Path path, String file, byte[] request) throws InterruptedException {
    ExecutorService thread =
        Executors.newSingleThreadExecutor(
            r -> {
              Thread t = new Thread(r, "corpus-" + file);
              t.setDaemon(true);
              return t;
            });
    Future<String> outcome =
        thread.submit(
            () -> {
              SidekillPolicy policy;
              try {
                WasmModule module = Parser.parse(Fixtures.read(path));
                // The module's own initial size, at most 4096 pages (256 MiB) in all.
                int initial =
                    module
                        .memorySection()
                        .filter(s -> s.memoryCount() > 0)
                        .map(s -> s.getMemory(0).limits().initialPages())
                        .orElse(0);
                Instance instance =
                    Instance.builder(module)
                        .withImportValues(ImportValues.empty())
                        .withMemoryLimits(new MemoryLimits(initial, Math.max(initial, 4096)))
                        .build();
                policy = new SidekillPolicy(instance);
              } catch (RuntimeException e) {
                return "refused-at-load: " + e.getClass().getSimpleName();
              }
              try {
                policy.plan(request);
                return "answers";
              } catch (RuntimeException e) {
                return "call-fails: " + e.getClass().getSimpleName();
              }
            });
    try {
      String got = outcome.get(SECONDS, TimeUnit.SECONDS);
      assertFalse(HANGS.contains(file), file + " returned: " + got);
      assertTrue(
          got.startsWith("refused-at-load") || got.startsWith("call-fails") || got.equals("answers"),
          got);
    } catch (TimeoutException e) {
      outcome.cancel(true); // chicory checks the interruption and throws
      assertTrue(HANGS.contains(file), file + " ran past " + SECONDS + " s: the loader has no deadline");
    } catch (ExecutionException e) {
      fail(file + ": an error, not an exception: " + e.getCause(), e.getCause());
    } finally {
      thread.shutdownNow();
      thread.awaitTermination(SECONDS, TimeUnit.SECONDS);
    }
  }
}
