pub mod home;
pub mod settings;
