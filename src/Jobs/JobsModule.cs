using Hangfire;
using Hangfire.PostgreSql;
using Hangfire.PostgreSql.Factories;
using Loom.Data;
using Loom.Jobs.Events;
using Loom.Jobs.FineTuning;
using Loom.Jobs.Maintenance;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Loom.Jobs;

/// <summary>
/// Entry point of the background-jobs module: Hangfire on the platform's PostgreSQL (its own schema). Every role
/// can enqueue jobs and publish job events; only processes with the jobs role run a Hangfire server, and those
/// keep the recurring jobs registered.
/// </summary>
public static class JobsModule
{
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
        services.AddHangfire((sp, c) => c.SetDataCompatibilityLevel(CompatibilityLevel.Version_180)
            .UseSimpleAssemblyNameTypeSerializer()
            .UseRecommendedSerializerSettings()
            .UseStorage(sp.GetRequiredService<JobStorage>()));
        services.AddSingleton<IJobEventPublisher, JobEventPublisher>();
        services.AddScoped<BlobCollectionJob>();
        services.AddScoped<UsageRollupJob>();
        services.AddFineTuningJobs();

        if (runServer)
        {
            services.AddHangfireServer((sp, s) =>
            {
                var o = sp.GetRequiredService<IOptions<JobsOptions>>().Value;
                s.WorkerCount = o.WorkerCount;
                s.ServerName = $"{Environment.MachineName}:{Environment.ProcessId}";
                s.SchedulePollingInterval = TimeSpan.FromSeconds(1);
            });
            services.AddHostedService<RecurringJobs>();
        }
        return services;
    }
}
