package sidekill;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * Bad input is answered with an error envelope, never a trap, and the same instance then answers
 * a good request exactly as a fresh instance does.
 */
class BadInputTest {
  /** A small good request; its answer from a fresh instance is the reference. */
  static final byte[] GOOD =
      ("{\"object\":{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\"},"
              + "\"spec\":{\"containers\":[{\"name\":\"app\",\"image\":\"busybox\"}]}},\"facts\":{}}")
          .getBytes(StandardCharsets.UTF_8);

  static final byte[] GOOD_ANSWER = Fixtures.fresh().plan(GOOD);

  private final SidekillPolicy policy = Fixtures.fresh();

  @Test
  void good_request_is_answered_ok() {
    assertEquals(List.of("ok"), keys(Fixtures.parse(GOOD_ANSWER)), Fixtures.preview(GOOD_ANSWER));
  }

  @Test
  void invalid_utf8_is_invalid_utf8() {
    byte[] head = "{\"object\":{\"kind\":\"Pod\",\"metadata\":{\"name\":\"".getBytes(StandardCharsets.UTF_8);
    byte[] request = Arrays.copyOf(head, head.length + 5);
    System.arraycopy(new byte[] {(byte) 0xff, '"', '}', '}', '}'}, 0, request, head.length, 5); // a lone 0xff
    assertError("invalid_utf8", policy.plan(request));
    assertStillUsable(policy);
  }

  @Test
  void truncated_json_is_invalid_json() {
    byte[] truncated = Arrays.copyOf(GOOD, GOOD.length / 2);
    assertError("invalid_json", policy.plan(truncated));
    assertStillUsable(policy);
  }

  @Test
  void empty_request_is_invalid_json() {
    assertError("invalid_json", policy.plan(new byte[0]));
    assertStillUsable(policy);
  }

  @Test
  void fifty_megabyte_request_is_request_too_large() {
    byte[] big = new byte[50 * 1024 * 1024];
    Arrays.fill(big, (byte) ' ');
    System.arraycopy(GOOD, 0, big, 0, GOOD.length);
    assertError("request_too_large", policy.plan(big));
    assertStillUsable(policy);
  }

  @Test
  void pointer_outside_memory_is_bad_pointer() {
    policy.plan(GOOD); // memory has seen an alloc and a free
    assertError("bad_pointer", policy.planAt(0xFFFF_FF00, 16)); // past the end of memory
    assertError("bad_pointer", policy.planAt(0x7FFF_FFF0, 0x100)); // past 2 GiB
    assertError("bad_pointer", policy.planAt(8, 0x10_0000)); // 1 MiB from address 8: inside no buffer
    assertStillUsable(policy);
  }

  @Test
  void call_before_any_alloc_is_bad_pointer() {
    SidekillPolicy untouched = Fixtures.fresh();
    assertError("bad_pointer", untouched.planAt(1024, 16));
    assertStillUsable(untouched);
  }

  private static void assertError(String code, byte[] answer) {
    JsonNode envelope = Fixtures.parse(answer);
    String text = Fixtures.preview(answer);
    assertEquals(List.of("error"), keys(envelope), text);
    JsonNode error = envelope.get("error");
    assertEquals(code, error.path("code").asText(), text);
    assertTrue(error.path("message").isTextual(), text);
    assertFalse(error.path("message").asText().isEmpty(), text);
  }

  private static void assertStillUsable(SidekillPolicy policy) {
    assertArrayEquals(GOOD_ANSWER, policy.plan(GOOD), "the next good call after bad input");
  }

  private static List<String> keys(JsonNode node) {
    List<String> names = new ArrayList<>();
    node.fieldNames().forEachRemaining(names::add);
    return names;
  }
}
