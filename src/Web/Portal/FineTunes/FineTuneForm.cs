using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Loom.Api.FineTuning;

namespace Loom.Web.Portal.FineTunes;

/// <summary>
/// The "new fine-tune" form as the user typed it. <see cref="ToRequest"/> turns it into the body of
/// POST /v1/fine_tuning/jobs and parses that with <see cref="CreateFineTuneRequest.Parse"/>, so the portal applies the
/// API's rules and limits word for word; <see cref="Field"/> maps the API's error parameter back to a form field.
/// Empty numeric fields mean "auto".
/// </summary>
public sealed class FineTuneForm
{
    public string Model { get; set; } = "";
    public string TrainingFile { get; set; } = "";
    public string ValidationFile { get; set; } = "";
    public string Epochs { get; set; } = "";
    public string BatchSize { get; set; } = "";
    public string LearningRateMultiplier { get; set; } = "";
    public string Rank { get; set; } = "";
    public string Alpha { get; set; } = "";
    public HashSet<string> TargetModules { get; } = ["q_proj", "v_proj"];
    public string Suffix { get; set; } = "";
    public string Seed { get; set; } = "";

    /// <summary>True when <see cref="Model"/> is one of the tenant's adapters: training continues from it with its own
    /// rank, alpha and target modules, so the form sends none.</summary>
    public bool ContinuesAdapter { get; set; }

    public const string Hp = "hyperparameters";

    /// <summary>Field names of the form (the ids of its controls end with them).</summary>
    public static class Fields
    {
        public const string Model = "model", Training = "training_file", Validation = "validation_file", Epochs = "n_epochs",
            BatchSize = "batch_size", LearningRate = "learning_rate_multiplier", Rank = "rank", Alpha = "alpha",
            Targets = "target_modules", Suffix = "suffix", Seed = "seed";
    }

    /// <summary>Parses the form as the API parses a request; throws <see cref="Loom.Api.Errors.ApiRequestException"/>
    /// naming the first bad parameter.</summary>
    public CreateFineTuneRequest ToRequest() => CreateFineTuneRequest.Parse(ToJson());

    public JsonElement ToJson()
    {
        var body = new JsonObject();
        Text(body, "model", Model);
        Text(body, "training_file", TrainingFile);
        Text(body, "validation_file", ValidationFile);
        Text(body, "suffix", Suffix);
        Number(body, "seed", Seed);
        var hp = new JsonObject();
        Number(hp, "n_epochs", Epochs);
        Number(hp, "batch_size", BatchSize);
        Number(hp, "learning_rate_multiplier", LearningRateMultiplier);
        body[Hp] = hp;
        if (ContinuesAdapter) return JsonSerializer.SerializeToElement(body);
        Number(hp, "rank", Rank);
        Number(hp, "alpha", Alpha);
        // Order as the engine lists them; an empty choice is sent as such (the API refuses an empty list).
        hp["target_modules"] = new JsonArray(Loom.Inference.Formats.LoraTargets.All.Select(Loom.Inference.Formats.LoraTargets.Name)
            .Where(TargetModules.Contains).Select(n => (JsonNode)JsonValue.Create(n)!).ToArray());
        return JsonSerializer.SerializeToElement(body);
    }

    /// <summary>The form field an API error parameter names (<c>hyperparameters.rank</c> → <c>rank</c>), or null.</summary>
    public static string? Field(string? param) => param switch
    {
        null => null,
        _ when param.StartsWith(Hp + ".", StringComparison.Ordinal) => param[(Hp.Length + 1)..],
        "rank" or "alpha" or "target_modules" or "model" or "training_file" or "validation_file" or "suffix" or "seed" => param,
        _ => null,
    };

    private static void Text(JsonObject o, string name, string value)
    {
        if (value.Trim().Length > 0) o[name] = value.Trim();
    }

    /// <summary>A number when it reads as one; otherwise the text as typed, which the API's parser refuses with its
    /// own message for that parameter.</summary>
    private static void Number(JsonObject o, string name, string value)
    {
        var v = value.Trim();
        if (v.Length == 0) return;
        if (long.TryParse(v, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var i)) o[name] = i;
        else if (double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && double.IsFinite(d)) o[name] = d;
        else o[name] = v;
    }
}
