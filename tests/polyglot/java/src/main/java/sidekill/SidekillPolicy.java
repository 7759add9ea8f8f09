package sidekill;

import com.dylibso.chicory.runtime.ExportFunction;
import com.dylibso.chicory.runtime.ImportValues;
import com.dylibso.chicory.runtime.Instance;
import com.dylibso.chicory.wasm.Parser;
import com.dylibso.chicory.wasm.WasmModule;
import java.nio.file.Path;

/**
 * sidekill's policy module (raw ABI v1, docs/ABI.md) in chicory: request JSON bytes in, answer
 * envelope bytes out ({@code {"ok": ...}} or {@code {"error": {"code", "message", "path"?}}}).
 * Bad input is answered with an error envelope, never an exception; the instance stays usable.
 *
 * <p>One instance serves many calls, one at a time (methods are synchronized). A chicory
 * exception (a trap) means a bug in the module: drop the instance and make a new one.
 * Copy this file: it needs {@code com.dylibso.chicory:runtime} and nothing else.
 */
public final class SidekillPolicy {
  /** The ABI major version this loader speaks. */
  public static final int ABI_MAJOR = 1;

  private final Instance instance;
  private final ExportFunction alloc, free, resultLen, plan, classify, matrix, policyInfo;

  /** Parses and instantiates the module file. */
  public static SidekillPolicy load(Path wasm) {
    return new SidekillPolicy(Parser.parse(wasm));
  }

  /** Instantiates a parsed module (parse once, instantiate many: one per thread). */
  public SidekillPolicy(WasmModule module) {
    // The module imports nothing: an empty import object is all it needs.
    this(Instance.builder(module).withImportValues(ImportValues.empty()).build());
  }

  /** Wraps an instance built by the caller, for example with chicory's compiler. */
  public SidekillPolicy(Instance instance) {
    this.instance = instance;
    int major = (int) instance.export("sidekill_abi_major").apply()[0];
    if (major != ABI_MAJOR) {
      throw new IllegalStateException("sidekill ABI major " + major + ", this loader speaks " + ABI_MAJOR);
    }
    alloc = instance.export("sidekill_alloc");
    free = instance.export("sidekill_free");
    resultLen = instance.export("sidekill_result_len");
    plan = instance.export("sidekill_plan");
    classify = instance.export("sidekill_classify");
    matrix = instance.export("sidekill_matrix");
    policyInfo = instance.export("sidekill_policy_info");
  }

  /** The termination plan for {@code {"object": ..., "facts": ...}}. */
  public synchronized byte[] plan(byte[] request) {
    return call(plan, request);
  }

  /** The container roles for a request; same request shape as {@link #plan}. */
  public synchronized byte[] classify(byte[] request) {
    return call(classify, request);
  }

  /** The support matrix. */
  public synchronized byte[] matrix() {
    return answer(matrix.apply()[0]);
  }

  /** {@code {"ok":{"name","version","features","presetsHash"}}}. */
  public synchronized byte[] policyInfo() {
    return answer(policyInfo.apply()[0]);
  }

  private byte[] call(ExportFunction fn, byte[] request) {
    // sidekill_alloc(0) answers 0; a one-byte buffer lets an empty request get its envelope.
    int size = Math.max(1, request.length);
    int ptr = (int) alloc.apply(size)[0];
    if (ptr == 0) {
      throw new IllegalArgumentException("sidekill_alloc(" + size + ") returned 0: over 64 MiB or out of memory");
    }
    try {
      instance.memory().write(ptr, request); // memory() every time: it may have grown
      return callAt(fn, ptr, request.length);
    } finally {
      free.apply(ptr, size);
    }
  }

  /** Calls a (ptr, len) export on bytes already in memory; tests use it for raw pointers. */
  byte[] callAt(ExportFunction fn, int ptr, int len) {
    return answer(fn.apply(Integer.toUnsignedLong(ptr), Integer.toUnsignedLong(len))[0]);
  }

  /** Raw access for tests: {@code sidekill_plan(ptr, len)} without an alloc. */
  byte[] planAt(int ptr, int len) {
    return callAt(plan, ptr, len);
  }

  /** Copies the last answer out: it is only valid until the next call. */
  private byte[] answer(long ptr) {
    int len = (int) resultLen.apply()[0];
    return instance.memory().readBytes((int) ptr, len);
  }
}
