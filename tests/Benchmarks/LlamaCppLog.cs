using System.Globalization;

namespace Loom.Benchmarks;

/// <summary>llama.cpp's figures read from the output of <c>../shared/anchors/llamacpp.sh</c> saved to a file in the same
/// sitting: <c>llama-bench</c>'s rows (model type, test ppN/tgN, tokens/s) and <c>llama-batched-bench</c>'s rows (batch
/// size, generation tokens/s). The engine suite draws them beside Loom's own.</summary>
internal sealed record LlamaCppLog(
    IReadOnlyList<(string Type, string Test, double TokensPerSecond)> Bench,
    IReadOnlyList<(int Batch, double TokensPerSecond)> BatchedDecode)
{
    /// <summary>Parses the saved output; a file with neither kind of row is an error, so a wrong file is not drawn as
    /// an empty series.</summary>
    public static LlamaCppLog Parse(string path)
    {
        var bench = new List<(string, string, double)>();
        var batched = new List<(int, double)>();
        foreach (string line in File.ReadLines(path))
        {
            string[] cells = line.Split('|', StringSplitOptions.TrimEntries);
            if (cells.Length < 3 || !line.TrimStart().StartsWith('|')) continue;
            cells = cells[1..^1];
            // llama-bench: | model | size | params | backend | threads | test | t/s |
            if (cells.Length >= 7 && (cells[^2].StartsWith("pp") || cells[^2].StartsWith("tg"))
                && Number(cells[^1].Split('±')[0], out double tps))
                bench.Add((TypeOf(cells[0]), cells[^2], tps));
            // llama-batched-bench: | PP | TG | B | N_KV | T_PP s | S_PP t/s | T_TG s | S_TG t/s | T s | S t/s |
            else if (cells.Length == 10 && int.TryParse(cells[2], out int b) && Number(cells[7], out double tg))
                batched.Add((b, tg));
        }
        if (bench.Count == 0 && batched.Count == 0)
            throw new InvalidDataException($"{path} holds no llama-bench or llama-batched-bench rows");
        return new LlamaCppLog(bench, batched);
    }

    /// <summary>Tokens/s of a llama-bench test (e.g. "tg64", "pp512") for a weight type ("BF16", "F32", "Q8_0").</summary>
    public double? Find(string type, string test) =>
        Bench.Where(r => r.Type == type && r.Test == test).Select(r => (double?)r.TokensPerSecond).FirstOrDefault();

    private static string TypeOf(string model) => model.Split(' ', StringSplitOptions.RemoveEmptyEntries).LastOrDefault() ?? "";

    private static bool Number(string s, out double v) =>
        double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out v);
}
