using Hangfire;
using Hangfire.AspNetCore;
using Hangfire.PostgreSql;
using Hangfire.PostgreSql.Factories;
using Loom.Data;
using Loom.Jobs.Events;
using Loom.Jobs.FineTuning;
using Loom.Jobs.Maintenance;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Loom.Jobs;

/// <summary>
/// Entry point of the background-jobs module: Hangfire on the platform's PostgreSQL (its own schema). Every role
/// can enqueue jobs and publish job events. Processes with the jobs role run a Hangfire server on the default queue
/// (maintenance jobs) and keep the recurring jobs registered; a process whose engine serves a base model runs a
/// second server on that model's fine-tune queue (<see cref="FineTuneServer"/>), so fine-tunes train where their
/// model is.
/// </summary>
public static class JobsModule
{
    /// <summary>The queue of maintenance jobs (Hangfire's default).</summary>
    private const string EnqueuedStateDefaultQueue = Hangfire.States.EnqueuedState.DefaultQueue;

    public static IServiceCollection AddJobs(this IServiceCollection services, IConfiguration configuration, bool runServer)
    {
        var connectionString = configuration.GetConnectionString(DataModule.ConnectionStringName)
            ?? throw new InvalidOperationException($"Connection string 'ConnectionStrings:{DataModule.ConnectionStringName}' is not configured.");
        services.AddOptions<JobsOptions>().BindConfiguration("Jobs")
            .Validate(o => !o.Problems().Any(), "Invalid Jobs options (see JobsOptions).").ValidateOnStart();

        // This process's storage, registered before AddHangfire (which only adds one if none is there): Hangfire's
        // own registration hands out the static JobStorage.Current, which several hosts in one process (the tests'
        // web nodes) would overwrite for each other.
        services.AddSingleton<JobStorage>(sp =>
        {
            var o = sp.GetRequiredService<IOptions<JobsOptions>>().Value;
            var storageOptions = new PostgreSqlStorageOptions
            {
                SchemaName = o.Schema,
                PrepareSchemaIfNecessary = true,
                InvisibilityTimeout = o.InvisibilityTimeout,
                UseSlidingInvisibilityTimeout = true,
                QueuePollInterval = o.QueuePollInterval,
                EnableLongPolling = true,
                DistributedLockTimeout = TimeSpan.FromSeconds(30),
            };
            return new PostgreSqlStorage(new NpgsqlConnectionFactory(connectionString, storageOptions), storageOptions);
        });
        // Likewise the activator: Hangfire's registration hands out the static JobActivator.Current, set by whichever host
        // built its configuration last, so a server would build its jobs from another host's services (and database).
        services.AddSingleton<JobActivator>(sp => new AspNetCoreJobActivator(sp.GetRequiredService<IServiceScopeFactory>()));
        services.AddHangfire((sp, c) => c.SetDataCompatibilityLevel(CompatibilityLevel.Version_180)
            .UseSimpleAssemblyNameTypeSerializer()
            .UseRecommendedSerializerSettings()
            .UseLogProvider(AttachLogging(sp))
            .UseStorage(sp.GetRequiredService<JobStorage>()));
        services.AddSingleton<HangfireLogAttachment>();
        services.AddSingleton<IJobEventPublisher, JobEventPublisher>();
        services.AddScoped<BlobCollectionJob>();
        services.AddScoped<UsageRollupJob>();
        services.AddFineTuningJobs();
        // Starts a server only where an engine serves a model (decided at start, whatever the order of registrations).
        services.AddSingleton<FineTuneServer>();
        services.AddHostedService(sp => sp.GetRequiredService<FineTuneServer>());

        if (runServer)
        {
            services.AddHangfireServer((sp, s) =>
            {
                var o = sp.GetRequiredService<IOptions<JobsOptions>>().Value;
                s.WorkerCount = o.WorkerCount;
                s.Queues = [EnqueuedStateDefaultQueue];
                s.ServerName = $"{Environment.MachineName}:{Environment.ProcessId}";
                s.SchedulePollingInterval = TimeSpan.FromSeconds(1);
            });
            services.AddHostedService<RecurringJobs>();
        }
        return services;
    }

    /// <summary>Hangfire logs through this host while it lives (see <see cref="HangfireLogBridge"/>).</summary>
    private static HangfireLogBridge AttachLogging(IServiceProvider sp)
    {
        sp.GetRequiredService<HangfireLogAttachment>();
        return HangfireLogBridge.Instance;
    }

    /// <summary>This host's place in <see cref="HangfireLogBridge"/>, given up when the host's services are disposed.</summary>
    private sealed class HangfireLogAttachment(ILoggerFactory loggerFactory) : IDisposable
    {
        private readonly IDisposable _handle = HangfireLogBridge.Instance.Attach(loggerFactory);

        public void Dispose() => _handle.Dispose();
    }
}
