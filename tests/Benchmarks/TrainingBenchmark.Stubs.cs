namespace Loom.Benchmarks;

internal static partial class TrainingBenchmark
{
    private static void CoServe(string[] args) { }
    private static void Quality(string[] args) { }
}
