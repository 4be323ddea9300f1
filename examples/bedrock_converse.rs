//! The provider as the AWS SDK's credentials, and a Bedrock Converse call: the core of an agent
//! on Azure calling Bedrock with no stored secret. Runs against a local cloud started in process.
//!
//! `cargo run -p examples --example bedrock_converse`

#[path = "support/mod.rs"]
mod support;

use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, Message};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let local = support::Local::start().await?;

    // On Azure: `let provider = EntraCredentialsProvider::from_env()?;`
    let provider = local.provider()?;
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .credentials_provider(provider)
        .region(aws_config::Region::new(local.var("AWS_REGION")))
        // Local cloud only: on AWS the SDK finds Bedrock's regional endpoint itself.
        .endpoint_url(local.var("AWS_ENDPOINT_URL_BEDROCK_RUNTIME"))
        .load()
        .await;
    let bedrock = aws_sdk_bedrockruntime::Client::new(&config);

    let answer = bedrock
        .converse()
        .model_id(local.var("BEDROCK_MODEL_ID"))
        .messages(
            Message::builder()
                .role(ConversationRole::User)
                .content(ContentBlock::Text("Say hello from Bedrock.".into()))
                .build()?,
        )
        .send()
        .await?;
    let text = answer
        .output()
        .and_then(|o| o.as_message().ok())
        .and_then(|m| m.content().first())
        .and_then(|c| c.as_text().ok())
        .ok_or("Converse returned no text")?;
    println!("Bedrock says: {text}");
    println!(
        "tokens in/out: {:?}",
        answer
            .usage()
            .map(|u| (u.input_tokens(), u.output_tokens()))
    );
    Ok(())
}
