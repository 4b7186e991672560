pub mod activity_panel;
pub mod admins_panel;
pub mod card;
pub mod custom_card;
pub mod home;
pub mod settings;
pub mod sync_panel;
