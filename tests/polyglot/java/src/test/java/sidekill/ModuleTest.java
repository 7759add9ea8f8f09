package sidekill;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.dylibso.chicory.runtime.Instance;
import com.dylibso.chicory.runtime.ImportValues;
import com.dylibso.chicory.wasm.types.ImportSection;
import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

/** The module's shape: no imports, ABI v1, and the calls that take no request. */
class ModuleTest {
  @Test
  void module_has_zero_imports() {
    ImportSection imports = Fixtures.module().importSection();
    String listed =
        IntStream.range(0, imports.importCount())
            .mapToObj(i -> imports.getImport(i).module() + "." + imports.getImport(i).name())
            .collect(Collectors.joining(", "));
    assertEquals(0, imports.importCount(), "imports: " + listed);
  }

  @Test
  void abi_is_1_3() {
    Instance instance =
        Instance.builder(Fixtures.module()).withImportValues(ImportValues.empty()).build();
    assertEquals(1L, instance.export("sidekill_abi_major").apply()[0]);
    assertEquals(5L, instance.export("sidekill_abi_minor").apply()[0]);
  }

  @Test
  void policy_info_names_the_policy() {
    JsonNode info = Fixtures.parse(Fixtures.fresh().policyInfo()).path("ok");
    for (String field : List.of("name", "version", "features", "presetsHash")) {
      assertTrue(info.has(field), "policyInfo lacks " + field + ": " + info);
    }
  }

  @Test
  void matrix_is_ok() {
    JsonNode envelope = Fixtures.parse(Fixtures.fresh().matrix());
    assertTrue(envelope.has("ok") && envelope.size() == 1, envelope.toString());
  }

  @Test
  void classify_answers_every_vector_with_an_envelope() {
    SidekillPolicy policy = Fixtures.fresh();
    List<String> bad = new ArrayList<>();
    for (Fixtures.Vector v : Fixtures.vectors()) {
      JsonNode envelope = Fixtures.parse(policy.classify(v.requestBytes()));
      boolean plannedOk = Fixtures.parse(v.answerBytes()).has("ok");
      // One key, ok or error; a request the native core plans is one the module can classify.
      boolean envelopeShape = envelope.size() == 1 && (envelope.has("ok") || envelope.has("error"));
      if (!envelopeShape || (plannedOk && !envelope.has("ok"))) {
        bad.add(v.name() + ": " + Fixtures.preview(envelope.toString().getBytes()));
      }
    }
    assertTrue(bad.isEmpty(), String.join("\n", bad));
  }
}
