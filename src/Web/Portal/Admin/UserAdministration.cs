using Loom.Data;
using Loom.Data.Audit;
using Loom.Data.Entities;
using Microsoft.AspNetCore.Identity;
using Microsoft.EntityFrameworkCore;

namespace Loom.Web.Portal.Admin;

/// <summary>A portal user as the administration page lists it.</summary>
public sealed record UserRow(Guid Id, string UserName, Guid TenantId, string TenantName, bool IsAdmin, bool IsLocked, bool IsInvited = false);

/// <summary>Portal users for administrators: create with an initial password, move to a tenant, grant or take the admin
/// role, set a new password, lock and unlock. Identity's password rules apply. Each change and its audit entry commit in
/// one transaction (Identity's own saves join it).</summary>
public sealed class UserAdministration(UserManager<LoomUser> users, PlatformDbContext db, AuditLog audit, TimeProvider clock)
{
    public async Task<List<UserRow>> ListAsync(CancellationToken ct)
    {
        var adminIds = (await users.GetUsersInRoleAsync(LoomIdentity.AdminRole)).Select(u => u.Id).ToHashSet();
        var now = clock.GetUtcNow();
        var rows = await db.Users.AsNoTracking().Join(db.Tenants, u => u.TenantId, t => t.Id, (u, t) => new { u.Id, u.UserName, u.TenantId, TenantName = t.Name, u.LockoutEnd, Invited = u.PasswordHash == null })
            .OrderBy(u => u.UserName).ToListAsync(ct);
        return rows.Select(u => new UserRow(u.Id, u.UserName!, u.TenantId, u.TenantName, adminIds.Contains(u.Id), u.LockoutEnd > now, u.Invited)).ToList();
    }

    public async Task<LoomUser> CreateAsync(string userName, string password, Guid tenantId, bool admin, CancellationToken ct)
    {
        userName = userName.Trim();
        if (userName.Length == 0) throw new AdminInputException("user", "Give the user a name.");
        if (await users.FindByNameAsync(userName) is not null) throw new AdminInputException("user", $"A user named “{userName}” already exists.");
        if (!await db.Tenants.AnyAsync(t => t.Id == tenantId, ct)) throw new AdminInputException("tenant", "Pick a tenant.");
        if (password.Length == 0) throw new AdminInputException("password", "Give the user an initial password.");
        var user = new LoomUser { Id = Guid.NewGuid(), UserName = userName, TenantId = tenantId };
        await AuditedAsync("user.created", user, $"name={userName}; admin={admin}", async () =>
        {
            Check(await users.CreateAsync(user, password), "password");
            if (admin) Check(await users.AddToRoleAsync(user, LoomIdentity.AdminRole), "role");
        }, ct);
        return user;
    }

    /// <summary>Moves the user to another tenant and sets the admin role; existing sessions end (new security stamp).</summary>
    public async Task UpdateAsync(Guid id, Guid tenantId, bool admin, CancellationToken ct)
    {
        var user = await Find(id);
        if (!await db.Tenants.AnyAsync(t => t.Id == tenantId, ct)) throw new AdminInputException("tenant", "Pick a tenant.");
        var wasAdmin = await users.IsInRoleAsync(user, LoomIdentity.AdminRole);
        var detail = $"name={user.UserName}; tenant={user.TenantId}->{tenantId}; admin={wasAdmin}->{admin}";
        user.TenantId = tenantId;
        await AuditedAsync("user.updated", user, detail, async () =>
        {
            Check(await users.UpdateAsync(user), "tenant");
            if (admin && !wasAdmin) Check(await users.AddToRoleAsync(user, LoomIdentity.AdminRole), "role");
            if (!admin && wasAdmin) Check(await users.RemoveFromRoleAsync(user, LoomIdentity.AdminRole), "role");
            Check(await users.UpdateSecurityStampAsync(user), "tenant");
        }, ct);
    }

    /// <summary>Sets a new password (checked by Identity's rules before the old one is removed).</summary>
    public async Task ResetPasswordAsync(Guid id, string password, CancellationToken ct)
    {
        var user = await Find(id);
        foreach (var validator in users.PasswordValidators) Check(await validator.ValidateAsync(users, user, password), "password");
        await AuditedAsync("user.password_set", user, $"name={user.UserName}", async () =>
        {
            Check(await users.RemovePasswordAsync(user), "password");
            Check(await users.AddPasswordAsync(user, password), "password");
            await users.ResetAccessFailedCountAsync(user);
        }, ct);
    }

    /// <summary>Locks the user out until unlocked (and ends their sessions), or unlocks them.</summary>
    public async Task SetLockedAsync(Guid id, bool locked, CancellationToken ct)
    {
        var user = await Find(id);
        await AuditedAsync(locked ? "user.locked" : "user.unlocked", user, $"name={user.UserName}", async () =>
        {
            Check(await users.SetLockoutEnabledAsync(user, true), "lock");
            Check(await users.SetLockoutEndDateAsync(user, locked ? DateTimeOffset.MaxValue : null), "lock");
            if (locked) Check(await users.UpdateSecurityStampAsync(user), "lock");
            else await users.ResetAccessFailedCountAsync(user);
        }, ct);
    }

    /// <summary>Runs Identity's steps and saves the audit entry in one transaction: a refused step rolls back all.</summary>
    private async Task AuditedAsync(string action, LoomUser user, string detail, Func<Task> change, CancellationToken ct)
    {
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        try
        {
            await change();
            audit.Add(action, user.TenantId, "user", user.Id.ToString(), detail);
            await db.SaveChangesAsync(ct);
            await tx.CommitAsync(ct);
        }
        catch
        {
            db.ChangeTracker.Clear(); // nothing half-made stays tracked for the next save
            throw;
        }
    }

    /// <summary>A fresh copy of the user: sign-ins elsewhere change the row (failed-attempt counts, stamps), and a copy
    /// tracked since an earlier action would fail Identity's concurrency check.</summary>
    private async Task<LoomUser> Find(Guid id)
    {
        db.ChangeTracker.Clear();
        return await users.FindByIdAsync(id.ToString()) ?? throw new AdminInputException("user", "The user no longer exists.");
    }

    private static void Check(IdentityResult result, string field)
    {
        if (!result.Succeeded) throw new AdminInputException(field, string.Join(" ", result.Errors.Select(e => e.Description)));
    }
}
