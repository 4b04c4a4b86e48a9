namespace Loom.Api.Responses;

/// <summary>Bound from configuration section "Api:Responses": how long and how much of POST /v1/responses is kept.</summary>
public sealed class ResponsesOptions
{
    /// <summary>Days a stored response is served (GET, input_items, previous_response_id) before it expires.</summary>
    public int RetentionDays { get; set; } = 30;

    /// <summary>Most responses one previous_response_id chain may hold.</summary>
    public int MaxChainLength { get; set; } = 100;

    /// <summary>Largest stored row (input items, instructions, tools, metadata and output as JSON), bytes.</summary>
    public int MaxStoredBytes { get; set; } = 2 * 1024 * 1024;

    /// <summary>Most items one request's input may hold.</summary>
    public int MaxInputItems { get; set; } = 1000;

    public IEnumerable<string> Problems()
    {
        if (RetentionDays is < 1 or > 3650) yield return "Api:Responses:RetentionDays must be between 1 and 3650";
        if (MaxChainLength < 1) yield return "Api:Responses:MaxChainLength must be positive";
        if (MaxStoredBytes < 1024) yield return "Api:Responses:MaxStoredBytes must be at least 1024";
        if (MaxInputItems < 1) yield return "Api:Responses:MaxInputItems must be positive";
    }
}
