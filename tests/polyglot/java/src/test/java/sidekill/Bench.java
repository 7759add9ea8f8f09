package sidekill;

import com.dylibso.chicory.compiler.MachineFactoryCompiler;
import com.dylibso.chicory.runtime.ImportValues;
import com.dylibso.chicory.runtime.Instance;
import com.dylibso.chicory.wasm.Parser;
import com.dylibso.chicory.wasm.WasmModule;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;

/**
 * Figures for the Java loader, printed, not asserted: cold parse + instantiate time (in fresh JVMs
 * and in a warm one) and plan latency per vector, with chicory's interpreter (what {@link
 * SidekillPolicy} uses by default), its compiler (wasm to JVM bytecode at instantiation) and the
 * classes its build-time compiler made of the shipped module ({@link SidekillBundled}; its
 * "parse" reads the stripped module the classes carry, whatever $SIDEKILL_WASM says).
 *
 * <p>Run with {@code bench.sh [--engine interpreter|compiler|bundled|all] [--warmup-ms N] [--measure-ms N]
 * [--min-calls N] [--fresh-jvms N] [--cold-runs N] [--filter TEXT]}. Module and vectors as in the
 * tests ($SIDEKILL_WASM, $SIDEKILL_VECTORS_OUT). Each answer is checked against the native one
 * once before it is timed; a differing vector is marked DIFFERS and still timed.
 *
 * <p>With {@code --jsonl FILE} it appends scripts/bench-runtimes' JSON lines to FILE instead of
 * printing tables: per engine, the median cold parse + instantiate (+ compile) over {@code
 * --fresh-jvms} fresh JVMs with the first plan timed apart, then per vector the median of single
 * plan calls ({@code --warmup-ms}, {@code --measure-ms}, {@code --min-calls}) after {@code
 * --global-warmup-ms} of warm-up on all vectors.
 */
public final class Bench {
  enum Engine {
    INTERPRETER,
    COMPILER,
    /** The jar's own module, compiled to classes at build time ({@link SidekillBundled}). */
    BUNDLED
  }

  private long warmupMs = 500, measureMs = 1000;
  private int minCalls = 10, freshJvms = 5, coldRuns = 20;
  private String filter = "";
  private String jsonl;
  private long globalWarmupMs = -1; // -1: 4 × warmupMs
  private List<Engine> engines = List.of(Engine.INTERPRETER, Engine.COMPILER, Engine.BUNDLED);

  public static void main(String[] args) throws Exception {
    if (args.length == 2 && args[0].equals("--cold-once")) {
      coldOnce(Engine.valueOf(args[1])); // the child of a fresh-JVM run
      return;
    }
    if (args.length == 2 && args[0].equals("--cold-once-plan")) {
      coldOncePlan(Engine.valueOf(args[1])); // the child of a fresh-JVM run, --jsonl mode
      return;
    }
    Bench bench = new Bench();
    bench.parse(args);
    bench.run();
  }

  private void parse(String[] args) {
    for (int i = 0; i < args.length; i++) {
      String value = i + 1 < args.length ? args[i + 1] : "";
      switch (args[i]) {
        case "--engine" -> {
          engines =
              value.equals("all")
                  ? List.of(Engine.INTERPRETER, Engine.COMPILER, Engine.BUNDLED)
                  : List.of(Engine.valueOf(value.toUpperCase()));
          i++;
        }
        case "--warmup-ms" -> warmupMs = Long.parseLong(args[++i]);
        case "--measure-ms" -> measureMs = Long.parseLong(args[++i]);
        case "--min-calls" -> minCalls = Integer.parseInt(args[++i]);
        case "--fresh-jvms" -> freshJvms = Integer.parseInt(args[++i]);
        case "--cold-runs" -> coldRuns = Integer.parseInt(args[++i]);
        case "--filter" -> filter = args[++i];
        case "--jsonl" -> jsonl = args[++i];
        case "--global-warmup-ms" -> globalWarmupMs = Long.parseLong(args[++i]);
        default -> throw new IllegalArgumentException("unknown argument " + args[i] + " (see Bench's doc)");
      }
    }
  }

  private void run() throws Exception {
    Path wasm = Fixtures.wasm();
    List<Fixtures.Vector> vectors = new ArrayList<>();
    for (Fixtures.Vector v : Fixtures.vectors()) {
      if (v.name().contains(filter)) {
        vectors.add(v);
      }
    }
    if (jsonl != null) {
      jsonl(vectors);
      return;
    }
    System.out.printf(
        "sidekill Java loader benchmark: chicory %s, Java %s (%s), %d cores%n",
        chicoryVersion(), System.getProperty("java.version"), System.getProperty("java.vm.name"),
        Runtime.getRuntime().availableProcessors());
    System.out.printf("module %s (%,d bytes); %d vectors from %s%n", wasm, Fixtures.read(wasm).length,
        vectors.size(), Fixtures.vectorsDir());
    System.out.printf("plan timing: %d ms warm-up, then at least %d ms and %d calls per vector, one instance%n",
        warmupMs, measureMs, minCalls);

    for (Engine engine : engines) {
      System.out.printf("%n== %s ==%n", engine.name().toLowerCase());
      coldInFreshJvms(engine);
      coldInThisJvm(engine);
      planLatency(engine, vectors);
    }
  }

  // ---- cold start ----

  /** Parse + instantiate (+ compile) + ABI check, each step timed, in nanoseconds. */
  private static long[] coldOnceNanos(Engine engine, byte[] bytes) {
    long t0 = System.nanoTime();
    WasmModule module = parse(engine, bytes);
    long t1 = System.nanoTime();
    SidekillPolicy policy = new SidekillPolicy(instance(engine, module));
    long t2 = System.nanoTime();
    policy.policyInfo();
    long t3 = System.nanoTime();
    return new long[] {t1 - t0, t2 - t1, t3 - t2};
  }

  private static WasmModule parse(Engine engine, byte[] bytes) {
    return engine == Engine.BUNDLED ? SidekillPolicyModule.load() : Parser.parse(bytes);
  }

  private static Instance instance(Engine engine, WasmModule module) {
    Instance.Builder builder = Instance.builder(module).withImportValues(ImportValues.empty());
    return switch (engine) {
      case INTERPRETER -> builder.build();
      case COMPILER -> builder.withMachineFactory(MachineFactoryCompiler.compile(module)).build();
      case BUNDLED -> builder.withMachineFactory(SidekillPolicyModule::create).build();
    };
  }

  private static void coldOnce(Engine engine) {
    long[] t = coldOnceNanos(engine, Fixtures.read(Fixtures.wasm()));
    System.out.printf("%d %d %d%n", t[0], t[1], t[2]);
  }

  /**
   * Runs this class's main in a fresh JVM (its `jvmOptions`, then `args`), so that nothing of this
   * JVM's warm state is timed; answers the numbers the child prints on its first line.
   */
  private static long[] freshJvm(List<String> jvmOptions, String... args)
      throws IOException, InterruptedException {
    List<String> command = new ArrayList<>();
    command.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    command.addAll(jvmOptions);
    command.addAll(List.of("-Dsidekill.repo=" + Fixtures.repo(), "-cp", System.getProperty("java.class.path"),
        Bench.class.getName()));
    command.addAll(List.of(args));
    Process child = new ProcessBuilder(command).redirectError(ProcessBuilder.Redirect.INHERIT).start();
    String line;
    try (BufferedReader out =
        new BufferedReader(new InputStreamReader(child.getInputStream(), StandardCharsets.UTF_8))) {
      line = out.readLine();
    }
    if (child.waitFor() != 0 || line == null) {
      throw new IllegalStateException("fresh JVM run failed: " + line);
    }
    return Arrays.stream(line.trim().split(" ")).mapToLong(Long::parseLong).toArray();
  }

  private void coldInFreshJvms(Engine engine) throws IOException, InterruptedException {
    if (freshJvms <= 0) {
      return;
    }
    List<long[]> runs = new ArrayList<>();
    for (int i = 0; i < freshJvms; i++) {
      runs.add(freshJvm(List.of(), "--cold-once", engine.name()));
    }
    System.out.printf("cold start in %d fresh JVMs (parse / instantiate%s / first call policyInfo):%n",
        freshJvms, engine == Engine.COMPILER ? " incl. compile" : "");
    printSteps(runs);
  }

  private void coldInThisJvm(Engine engine) {
    byte[] bytes = Fixtures.read(Fixtures.wasm());
    List<long[]> runs = new ArrayList<>();
    for (int i = 0; i < coldRuns + 3; i++) {
      long[] t = coldOnceNanos(engine, bytes);
      if (i >= 3) { // 3 unmeasured rounds warm the JIT for parse and instantiate
        runs.add(t);
      }
    }
    System.out.printf("parse + instantiate again in this JVM, %d runs after 3 unmeasured:%n", coldRuns);
    printSteps(runs);
  }

  private static void printSteps(List<long[]> runs) {
    String[] names = {"parse", "instantiate", "first call", "total"};
    for (int step = 0; step < 4; step++) {
      long[] values = new long[runs.size()];
      for (int i = 0; i < runs.size(); i++) {
        long[] r = runs.get(i);
        values[i] = step < 3 ? r[step] : r[0] + r[1] + r[2];
      }
      Stats s = Stats.of(values);
      System.out.printf("  %-12s median %9.2f ms   min %9.2f   max %9.2f%n", names[step], s.median, s.min, s.max);
    }
  }

  // ---- scripts/bench-runtimes: JSON lines ----

  /** Parse + instantiate (+ compile) + ABI check, then the first vector's plan: two figures, ns. */
  private static void coldOncePlan(Engine engine) {
    byte[] bytes = Fixtures.read(Fixtures.wasm());
    byte[] request = Fixtures.vectors().get(0).requestBytes();
    long t0 = System.nanoTime();
    SidekillPolicy policy = new SidekillPolicy(instance(engine, parse(engine, bytes)));
    long t1 = System.nanoTime();
    policy.plan(request);
    long t2 = System.nanoTime();
    System.out.printf("%d %d%n", t1 - t0, t2 - t1);
  }

  private void jsonl(List<Fixtures.Vector> vectors) throws IOException, InterruptedException {
    if (vectors.isEmpty()) {
      throw new IllegalStateException("no vectors in " + Fixtures.vectorsDir());
    }
    try (java.io.Writer out =
        java.nio.file.Files.newBufferedWriter(
            Path.of(jsonl), StandardCharsets.UTF_8, java.nio.file.StandardOpenOption.CREATE,
            java.nio.file.StandardOpenOption.APPEND)) {
      for (Engine engine : engines) {
        String runtime = "chicory-" + engine.name().toLowerCase();
        java.util.function.Consumer<String> emit =
            fields -> {
              try {
                out.write("{\"runtime\":\"" + runtime + "\"," + fields + "}\n");
                out.flush();
              } catch (IOException e) {
                throw new java.io.UncheckedIOException(e);
              }
            };
        emit.accept(
            "\"kind\":\"meta\",\"version\":\"chicory " + chicoryVersion() + " (" + engine.name().toLowerCase()
                + "), Java " + System.getProperty("java.version") + "\"");

        // Cold: fresh JVMs, the JVM's own start not timed.
        long[] cold = new long[freshJvms], first = new long[freshJvms];
        for (int i = 0; i < freshJvms; i++) {
          long[] t = freshJvm(List.of("-Xmx1g"), "--cold-once-plan", engine.name());
          cold[i] = t[0];
          first[i] = t[1];
        }
        if (freshJvms > 0) {
          Arrays.sort(cold);
          Arrays.sort(first);
          emit.accept(
              String.format(
                  "\"kind\":\"cold\",\"median_ns\":%d,\"min_ns\":%d,\"runs\":%d,\"first_plan_ns\":%d,"
                      + "\"first_plan_vector\":\"%s\",\"how\":\"%s + sidekill_abi_major(),"
                      + " each in a fresh JVM (JVM start not timed)\"",
                  cold[freshJvms / 2], cold[0], freshJvms, first[freshJvms / 2], vectors.get(0).name(),
                  switch (engine) {
                    case INTERPRETER -> "Parser.parse + Instance.build";
                    case COMPILER -> "Parser.parse + Instance.build (MachineFactoryCompiler.compile)";
                    case BUNDLED -> "SidekillPolicyModule.load + Instance.build (build-time compiled classes)";
                  }));
        }

        // Plan: one instance, warmed on every vector, then each vector timed.
        SidekillPolicy policy = new SidekillPolicy(instance(engine, parse(engine, Fixtures.read(Fixtures.wasm()))));
        long warmEnd = System.nanoTime() + (globalWarmupMs >= 0 ? globalWarmupMs : 4 * warmupMs) * 1_000_000;
        do {
          vectors.forEach(v -> policy.plan(v.requestBytes()));
        } while (System.nanoTime() < warmEnd);
        for (Fixtures.Vector v : vectors) {
          byte[] request = v.requestBytes();
          boolean same = Arrays.equals(policy.plan(request), v.answerBytes());
          long[] samples = samples(() -> policy.plan(request));
          emit.accept(
              String.format(
                  "\"kind\":\"plan\",\"vector\":\"%s\",\"median_ns\":%d,\"calls\":%d,\"same\":%b",
                  v.name(), samples[samples.length / 2], samples.length, same));
        }
      }
    }
  }

  /**
   * Per-call times in ns, sorted: `call` run for the warm-up time, then timed for the measuring
   * time (at least `minCalls` calls, at most 65,536).
   */
  private long[] samples(Runnable call) {
    long warmEnd = System.nanoTime() + warmupMs * 1_000_000;
    do {
      call.run();
    } while (System.nanoTime() < warmEnd);
    long[] samples = new long[1 << 16];
    int n = 0;
    long end = System.nanoTime() + measureMs * 1_000_000;
    while (n < samples.length && (n < minCalls || System.nanoTime() < end)) {
      long t0 = System.nanoTime();
      call.run();
      samples[n++] = System.nanoTime() - t0;
    }
    long[] out = Arrays.copyOf(samples, n);
    Arrays.sort(out);
    return out;
  }

  // ---- plan latency ----

  private void planLatency(Engine engine, List<Fixtures.Vector> vectors) {
    SidekillPolicy policy = new SidekillPolicy(instance(engine, parse(engine, Fixtures.read(Fixtures.wasm()))));
    // Warm the JIT on every vector first, so that the first rows are not timed colder than the rest.
    long warmEnd = System.nanoTime() + 4 * warmupMs * 1_000_000;
    do {
      vectors.forEach(v -> policy.plan(v.requestBytes()));
    } while (System.nanoTime() < warmEnd);
    System.out.printf("plan latency per vector (ms), after %d ms of warm-up on all vectors:%n", 4 * warmupMs);
    System.out.printf("  %-44s %7s %7s %9s %9s %9s %7s%n", "vector", "req B", "ans B", "median", "p90", "min", "calls");
    List<Double> medians = new ArrayList<>();
    int differing = 0;
    for (Fixtures.Vector v : vectors) {
      byte[] request = v.requestBytes();
      byte[] answer = policy.plan(request);
      boolean same = Fixtures.canonical(answer).equals(Fixtures.canonical(v.answerBytes()));
      differing += same ? 0 : 1;
      Stats s = time(() -> policy.plan(request));
      medians.add(s.median);
      System.out.printf("  %-44s %7d %7d %9.3f %9.3f %9.3f %7d%s%n", v.name(), request.length, answer.length,
          s.median, s.p90, s.min, s.count, same ? "" : "  DIFFERS from native");
    }
    double[] m = medians.stream().mapToDouble(Double::doubleValue).sorted().toArray();
    if (m.length > 0) {
      System.out.printf("  all %d vectors: median of medians %.3f ms, min %.3f, max %.3f, one pass %.1f ms%s%n",
          m.length, m[m.length / 2], m[0], m[m.length - 1], Arrays.stream(m).sum(),
          differing == 0 ? "" : "; " + differing + " DIFFER from native");
    }
    Stats info = time(policy::policyInfo);
    Stats matrix = time(policy::matrix);
    System.out.printf("  policyInfo median %.3f ms, matrix median %.3f ms%n", info.median, matrix.median);
  }

  /** Warms `call` up, then times it: the per-call times of {@link #samples}, as order statistics. */
  private Stats time(Runnable call) {
    return Stats.of(samples(call));
  }

  /** Order statistics in milliseconds. */
  record Stats(double median, double p90, double min, double max, int count) {
    static Stats of(long[] nanos) {
      long[] s = nanos.clone();
      Arrays.sort(s);
      int n = s.length;
      return new Stats(s[n / 2] / 1e6, s[Math.min(n - 1, (int) Math.ceil(n * 0.9) - 1)] / 1e6, s[0] / 1e6,
          s[n - 1] / 1e6, n);
    }
  }

  private static String chicoryVersion() {
    try (InputStream in =
        Instance.class.getResourceAsStream("/META-INF/maven/com.dylibso.chicory/runtime/pom.properties")) {
      Properties p = new Properties();
      if (in != null) {
        p.load(in);
      }
      return p.getProperty("version", "(unknown)");
    } catch (IOException e) {
      return "(unknown)";
    }
  }
}
