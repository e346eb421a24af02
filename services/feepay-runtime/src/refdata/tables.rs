//! The reference tables as sea-orm entities: `reference_versions` holds each loaded version's
//! files (what services parse), the other four its normalised rows for queries and reports
//! (replaced as a whole by each load).

/// `reference_versions`: one row per load that changed something.
pub mod versions {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "reference_versions")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub loaded_at: DateTimeUtc,
        pub loaded_by: String,
        pub agencies_toml: String,
        pub fees_toml: String,
        pub waivers_toml: String,
        /// SHA-256 over the three files: loading the same files again changes nothing.
        pub digest: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `agencies`: collectors and desks, with their parent (province → commune).
pub mod agencies {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "agencies")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub code: String,
        pub name: String,
        pub tax_code: String,
        pub address: String,
        pub parent: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `series`: the receipt series each agency registered.
pub mod series {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "series")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub agency: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub template: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub letters: String,
        /// The fee kinds (`phi`, `le_phi`) the series is used for.
        pub kinds: Vec<String>,
        pub title: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `fees`: each fee or charge with its base amount and legal basis.
pub mod fees {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "fees")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub code: String,
        pub name: String,
        /// `phi` or `le_phi`.
        pub kind: String,
        pub base_amount: i64,
        pub authority: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `waiver_rules`: each rule with its legal basis, validity and its definition as JSON.
pub mod waiver_rules {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "waiver_rules")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub document_number: String,
        pub issuing_body: String,
        pub valid_from: Date,
        pub valid_until: Option<Date>,
        pub priority: i32,
        pub definition: Json,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
