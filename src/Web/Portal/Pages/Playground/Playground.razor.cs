using System.Diagnostics;
using System.Globalization;
using Loom.Api.Completions;
using Loom.Data;
using Loom.Data.Entities;
using Loom.Data.Tenancy;
using Loom.Inference.Tokenization;
using Loom.Web.Portal.Identity;
using Loom.Web.Portal.Playground;
using Microsoft.AspNetCore.Components;
using Microsoft.EntityFrameworkCore;

namespace Loom.Web.Portal.Pages.Playground;

/// <summary>Streams a chat through <see cref="CompletionService"/> as the signed-in user's tenant (same model resolution,
/// context and token-budget checks, fair-share scheduling and usage records as the API).</summary>
public sealed partial class Playground : ComponentBase, IDisposable
{
    private static readonly string[] Languages = ["curl", "Python", "Node"];

    [Inject] private CompletionService Completions { get; set; } = default!;
    [Inject] private PlaygroundModels Models { get; set; } = default!;
    [Inject] private PlatformDbContext Db { get; set; } = default!;
    [Inject] private TenantContext Tenant { get; set; } = default!;
    [Inject] private NavigationManager Navigation { get; set; } = default!;
    [Inject] private ILogger<Playground> Logger { get; set; } = default!;

    /// <summary>Preselects a model, e.g. from an adapter's "Try it" link.</summary>
    [SupplyParameterFromQuery(Name = "model")] private string? RequestedModel { get; set; }

    private sealed class Turn(string role, string content)
    {
        public string Role { get; } = role;
        public string Content { get; set; } = content;
    }

    private List<PlaygroundModel>? models;
    private readonly List<Turn> turns = [];
    private string selected = "";
    private string systemPrompt = "";
    private string input = "";
    private double temperature = 1.0;
    private double topP = 1.0;
    private int maxTokens = 64;
    private string seedText = "";
    private string language = "curl";

    private readonly Dictionary<string, string> errors = [];
    private string? generalError;
    private bool running;
    private CancellationTokenSource? stop;
    private TimeSpan? ttft;
    private double? tokensPerSecond;
    private int tokenCount;
    private string status = "Idle";

    private bool Interactive => RendererInfo.IsInteractive;

    private string? Error(string field) => errors.GetValueOrDefault(field);

    protected override async Task OnInitializedAsync()
    {
        models = await Models.ListAsync(CancellationToken.None);
        if (RequestedModel is { Length: > 0 } requested)
        {
            if (models.Any(m => m.Name == requested)) selected = requested;
            else errors["model"] = $"You have no model named “{requested}”.";
        }
        if (selected.Length == 0 && models.Count > 0) selected = models[0].Name;
    }

    private ChatRequestSpec Spec(bool withInput)
    {
        var messages = new List<(string Role, string Content)>();
        if (!string.IsNullOrWhiteSpace(systemPrompt)) messages.Add(("system", systemPrompt.Trim()));
        messages.AddRange(turns.Where(t => t.Content.Length > 0).Select(t => (t.Role, t.Content)));
        if (withInput && !string.IsNullOrWhiteSpace(input)) messages.Add(("user", input.Trim()));
        return new ChatRequestSpec(selected, messages, temperature, topP, maxTokens, ParseSeed(seedText));
    }

    private string Snippet()
    {
        var spec = Spec(withInput: true);
        if (spec.Messages.Count == 0) spec = spec with { Messages = [("user", "Hello!")] };
        var baseUrl = Navigation.BaseUri;
        return language switch { "Python" => ChatSnippets.Python(spec, baseUrl), "Node" => ChatSnippets.Node(spec, baseUrl), _ => ChatSnippets.Curl(spec, baseUrl) };
    }

    private static long? ParseSeed(string text) =>
        long.TryParse(text.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var seed) ? seed : null;

    private bool Validate()
    {
        errors.Clear();
        generalError = null;
        if (models is null || models.All(m => m.Name != selected)) errors["model"] = "Pick a model.";
        if (temperature is < 0 or > 2 || double.IsNaN(temperature)) errors["temperature"] = "Temperature must be between 0 and 2.";
        if (topP is <= 0 or > 1 || double.IsNaN(topP)) errors["top_p"] = "Top-p must be greater than 0 and at most 1.";
        if (maxTokens < 1) errors["max_tokens"] = "Max tokens must be at least 1.";
        if (seedText.Trim().Length > 0 && ParseSeed(seedText) is null) errors["seed"] = "The seed must be a whole number, or empty for a random one.";
        if (string.IsNullOrWhiteSpace(input)) errors["messages"] = "Write a message first.";
        else if (input.Length > 32_000) errors["messages"] = "A message is at most 32,000 characters.";
        return errors.Count == 0;
    }

    private async Task SendAsync()
    {
        if (!Validate()) return;
        if (Tenant.TenantId is not { } tenantId)
        {
            Logger.LogWarning("Playground request from the portal refused: the circuit has no tenant");
            generalError = PortalUser.NoTenant;
            return;
        }
        var tenant = await Db.Tenants.AsNoTracking().SingleAsync(t => t.Id == tenantId);
        var caller = PortalCaller.For(tenant);
        var spec = Spec(withInput: true);
        var userTurn = new Turn("user", input.Trim());

        running = true;
        status = "Waiting for the first token";
        ttft = null;
        tokensPerSecond = null;
        tokenCount = 0;
        stop = new CancellationTokenSource();
        var ct = stop.Token;
        var started = Stopwatch.GetTimestamp();
        long firstAt = 0;
        Turn? reply = null;
        try
        {
            var model = await Completions.ResolveAsync(spec.Model, ct);
            int[] prompt;
            try { prompt = model.Tokenizer.EncodeChat(spec.Messages.Select(m => new ChatMessage(m.Role, m.Content)).ToList()); }
            catch (InvalidOperationException e) { throw new CompletionRefusedException(400, e.Message, "invalid_request_error", "model", null); }
            var options = new CompletionOptions { Model = spec.Model, MaxTokens = spec.MaxTokens, Temperature = (float)spec.Temperature, TopP = (float)spec.TopP, Seed = spec.Seed, Stream = true };
            var prepared = Completions.Prepare(model, prompt, options, caller, RequestPriority.Interactive, "messages");

            turns.Add(userTurn);
            input = "";
            reply = new Turn("assistant", "");
            turns.Add(reply);
            await foreach (var (_, e) in Completions.RunAsync(prepared, caller, ct))
            {
                if (e.TokenId is not null)
                {
                    tokenCount++;
                    if (firstAt == 0)
                    {
                        firstAt = Stopwatch.GetTimestamp();
                        ttft = Stopwatch.GetElapsedTime(started, firstAt);
                        status = "Streaming";
                    }
                    else if (tokenCount > 1 && Stopwatch.GetElapsedTime(firstAt).TotalSeconds is > 0 and var seconds)
                    {
                        tokensPerSecond = (tokenCount - 1) / seconds;
                    }
                }
                reply.Content += e.Text;
                // the usage is what the tenant is billed: it also counts a stop token, which streams no text event
                if (e.Usage is { } usage) tokenCount = usage.CompletionTokens;
                if (e.IsFinal) status = e.FinishReason == Loom.Inference.Engine.FinishReason.Length ? "Done (max tokens reached)" : "Done";
                StateHasChanged();
            }
        }
        catch (CompletionRefusedException e)
        {
            status = "Refused";
            if (e.Param is "model" or "max_tokens" or "messages") errors[e.Param] = e.Message;
            else generalError = e.Message;
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            status = "Stopped";
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            Logger.LogError(e, "Playground completion failed for tenant {Tenant}", tenantId);
            status = "Failed";
            generalError = "The model failed while generating this reply.";
        }
        finally
        {
            if (firstAt != 0 && tokenCount > 1)
            {
                var seconds = Stopwatch.GetElapsedTime(firstAt).TotalSeconds;
                tokensPerSecond = seconds > 0 ? (tokenCount - 1) / seconds : null;
            }
            running = false;
            stop?.Dispose();
            stop = null;
        }
    }

    private void Stop() => stop?.Cancel();

    private void Clear()
    {
        turns.Clear();
        status = "Idle";
        ttft = null;
        tokensPerSecond = null;
        tokenCount = 0;
        generalError = null;
    }

    public void Dispose() => stop?.Cancel();
}
