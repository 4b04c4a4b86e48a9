using Loom.Data;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Loom.Jobs.Worker;

/// <summary>
/// Runs a Hangfire server exactly as a Loom process with the jobs role does (AddJobs), plus the probe jobs.
/// Configuration comes from the environment (ConnectionStrings__Loom, Jobs__InvisibilityTimeout, ...).
/// </summary>
internal static class WorkerProgram
{
    private static async Task Main(string[] args)
    {
        var builder = Host.CreateApplicationBuilder(args);
        builder.Services.AddData(builder.Configuration);
        builder.Services.AddJobs(builder.Configuration, runServer: true);
        builder.Services.AddTransient<ProbeJobs>();
        using var host = builder.Build();
        await host.StartAsync();
        Console.WriteLine($"ready {Environment.ProcessId}");
        await host.WaitForShutdownAsync();
    }
}
