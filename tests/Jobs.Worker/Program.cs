using Loom.Data;
using Loom.Jobs;
using Loom.Jobs.Worker;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

// Runs a Hangfire server exactly as a Loom process with the jobs role does (AddJobs), plus the probe jobs.
// Configuration comes from the environment (ConnectionStrings__Loom, Jobs__InvisibilityTimeout, ...).
var builder = Host.CreateApplicationBuilder(args);
builder.Services.AddData(builder.Configuration);
builder.Services.AddJobs(builder.Configuration, runServer: true);
builder.Services.AddTransient<ProbeJobs>();
var host = builder.Build();
await host.StartAsync();
Console.WriteLine($"ready {Environment.ProcessId}");
await host.WaitForShutdownAsync();
