pub mod card;
pub mod home;
pub mod settings;
