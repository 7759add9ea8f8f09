package sidekill;

import com.dylibso.chicory.runtime.ImportValues;
import com.dylibso.chicory.runtime.Instance;

/**
 * The policy module this jar was built with ({@code dist/raw/sidekill_policy.wasm}), compiled to
 * JVM bytecode at build time by chicory's build-time compiler ({@code
 * chicory-compiler-maven-plugin}, which generates {@code SidekillPolicyModule}). An instance
 * needs no wasm compile at run time, where chicory's runtime compiler takes about 2 s in a fresh
 * JVM, and runs as fast as that compiler's output rather than at the interpreter's pace.
 *
 * <p>For another module (a newer policy, a hot swap) use {@link SidekillPolicy#load}.
 */
public final class SidekillBundled {
  private SidekillBundled() {}

  /** A new instance of the bundled module (one per thread, as for {@link SidekillPolicy}). */
  public static SidekillPolicy create() {
    return new SidekillPolicy(
        Instance.builder(SidekillPolicyModule.load())
            .withImportValues(ImportValues.empty())
            .withMachineFactory(SidekillPolicyModule::create)
            .build());
  }
}
