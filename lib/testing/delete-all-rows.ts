import type { Knex } from 'knex';

/** Options of `deleteAllRows`. */
export interface DeleteAllRowsOptions {
  /**
   * Tables to keep as they are.
   * @default knex's migration tables, `knex_migrations` and `knex_migrations_lock`
   */
  readonly keep?: readonly string[];
}

interface Edge {
  child: string;
  parent: string;
}

/**
 * Empties every table of the database `knex` is connected to (the current schema on PostgreSQL),
 * children before parents, in one transaction: nameko's `db_session` teardown. Tables are emptied,
 * not dropped, and auto-increment counters keep counting.
 *
 * @example
 * afterEach(() => deleteAllRows(knex));
 */
export async function deleteAllRows(knex: Knex, options: DeleteAllRowsOptions = {}): Promise<void> {
  const keep = new Set(options.keep ?? ['knex_migrations', 'knex_migrations_lock']);
  const dialect = (knex.client as { dialect?: string }).dialect;
  await knex.transaction(async (trx) => {
    const { tables, edges } = await readTables(trx, dialect);
    const { ordered, cyclic } = childrenFirst(
      tables.filter((table) => !keep.has(table)),
      edges,
    );
    if (dialect === 'mysql') await trx.raw('set foreign_key_checks = 0');
    if (dialect === 'sqlite3') await trx.raw('pragma defer_foreign_keys = on');
    try {
      for (const table of ordered) await trx(table).delete();
      if (cyclic.length > 0) {
        if (dialect === 'postgresql') {
          await trx.raw(`truncate ${cyclic.map(() => '??').join(', ')}`, cyclic);
        } else {
          for (const table of cyclic) await trx(table).delete();
        }
      }
    } finally {
      if (dialect === 'mysql') await trx.raw('set foreign_key_checks = 1');
    }
  });
}

async function readTables(
  trx: Knex.Transaction,
  dialect: string | undefined,
): Promise<{ tables: string[]; edges: Edge[] }> {
  if (dialect === 'postgresql') {
    const tables = await trx.raw<{ rows: { name: string }[] }>(
      `select c.relname as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where c.relkind in ('r', 'p') and not c.relispartition and n.nspname = current_schema()`,
    );
    const edges = await trx.raw<{ rows: Edge[] }>(
      `select c.relname as child, p.relname as parent from pg_constraint k
         join pg_class c on c.oid = k.conrelid join pg_class p on p.oid = k.confrelid
         join pg_namespace n on n.oid = c.relnamespace
        where k.contype = 'f' and n.nspname = current_schema()`,
    );
    return { tables: tables.rows.map((row) => row.name), edges: edges.rows };
  }
  if (dialect === 'mysql') {
    const [tables] = await trx.raw(
      `select table_name as name from information_schema.tables
        where table_schema = database() and table_type = 'BASE TABLE'`,
    );
    const [edges] = await trx.raw(
      `select table_name as child, referenced_table_name as parent
         from information_schema.referential_constraints where constraint_schema = database()`,
    );
    return {
      tables: (tables as { name: string }[]).map((row) => row.name),
      edges: edges as Edge[],
    };
  }
  const tables: { name: string }[] = await trx.raw(
    `select name from sqlite_master where type = 'table' and name not like 'sqlite\\_%' escape '\\'`,
  );
  const edges: Edge[] = await trx.raw(
    `select m.name as child, f."table" as parent
       from sqlite_master m join pragma_foreign_key_list(m.name) f where m.type = 'table'`,
  );
  return { tables: tables.map((row) => row.name), edges };
}

/**
 * Orders tables so that every table comes before the tables it references. Tables on a reference
 * cycle (other than a table referencing itself) are returned apart.
 */
function childrenFirst(
  tables: readonly string[],
  edges: readonly Edge[],
): { ordered: string[]; cyclic: string[] } {
  const present = new Set(tables);
  const referencedBy = new Map<string, Set<string>>(tables.map((table) => [table, new Set()]));
  for (const { child, parent } of edges) {
    if (child !== parent && present.has(child) && present.has(parent)) {
      referencedBy.get(parent)?.add(child);
    }
  }
  const ordered: string[] = [];
  const remaining = new Set(tables);
  for (let progress = true; progress && remaining.size > 0; ) {
    progress = false;
    for (const table of [...remaining].sort()) {
      const children = referencedBy.get(table) ?? new Set();
      if ([...children].every((child) => !remaining.has(child))) {
        ordered.push(table);
        remaining.delete(table);
        progress = true;
      }
    }
  }
  return { ordered, cyclic: [...remaining] };
}
