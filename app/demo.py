"""Realistic demo data: one user per role, Japanese customers and their activity."""

import random

import sqlalchemy as sa
from datetime import timedelta
from decimal import Decimal

from flask import current_app

from app.services.users import create_user
from app.context import acting_as
from app.extensions import db
from app.services import approvals, cards
from models import (
    ApprovalRequest,
    ApprovalStatus,
    CompanySize,
    Customer,
    InvestmentProfile,
    Meeting,
    MeetingStatus,
    MeetingType,
    Product,
    ProductType,
    Task,
    TaskPriority,
    TaskStatus,
    User,
)
from models.base import utcnow

# Where a demo meeting is held, and so how.
MEETING_PLACES = {"貴社会議室": MeetingType.visit, "弊社応接室": MeetingType.branch, "オンライン": MeetingType.online}
DEMO_USERS = [
    ("admin@example.com", "管理 太郎", "Admin"),
    ("manager@example.com", "鈴木 一郎", "Manager"),
    ("compliance@example.com", "高橋 花子", "Compliance"),
    ("sales@example.com", "田中 健太", "Sales"),
    ("sales2@example.com", "佐藤 美咲", "Sales"),
]
SURNAMES = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤", "吉田", "山田", "佐々木", "山口", "松本"]
GIVEN = ["翔太", "陽菜", "大輔", "結衣", "拓也", "美穂", "健一", "彩", "直樹", "恵子", "誠", "由美"]
COMPANY_STEMS = ["東京", "大阪", "横浜", "名古屋", "札幌", "福岡", "京都", "神戸", "仙台", "広島", "千葉", "北陸", "湘南", "瀬戸内"]
COMPANY_KINDS = [("商事", "商社"), ("製作所", "製造業"), ("不動産", "不動産"), ("物流", "物流"), ("食品", "食品"),
                 ("テクノロジー", "IT"), ("建設", "建設"), ("薬品", "医薬品"), ("ホールディングス", "金融")]
PRODUCTS = [("国内株式ファンド", 5), ("米国債券ファンド", 3), ("新興国株式ファンド", 8), ("個人向け国債", 1),
            ("仕組債", 9), ("J-REITファンド", 6), ("バランスファンド", 4), ("外貨預金(USD)", 4)]
MEETING_TITLES = ["初回ヒアリング", "ポートフォリオ見直し", "新商品のご提案", "運用報告", "相続対策のご相談", "定期訪問"]
NEXT_ACTIONS = ["提案書を送付", "見積りを提示", "社内稟議の確認", "次回面談の日程調整", "契約書類の準備"]


def seed_demo(customers=50, seed=2026):
    """Create demo users and data; return [(email, role)] of the demo logins."""
    rng = random.Random(seed)
    sm = current_app.appbuilder.sm
    password = current_app.config["DEMO_PASSWORD"]
    users = {}
    for email, name, role in DEMO_USERS:
        users[email] = sm.find_user(email=email) or create_user(email, name, role, password)
    reps = [users["sales@example.com"], users["sales2@example.com"]]
    manager, compliance = users["manager@example.com"], users["compliance@example.com"]
    now = utcnow()
    created = []

    for i in range(customers):
        rep = reps[i % len(reps)]
        with acting_as(rep):
            stem, (kind, industry) = rng.choice(COMPANY_STEMS), rng.choice(COMPANY_KINDS)
            contact = f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}"
            customer = Customer(
                name=f"株式会社{stem}{kind}",
                email=f"contact{i + 1:03d}@{['tokyo', 'osaka', 'kanto', 'kansai', 'nippon'][i % 5]}-demo{i + 1:03d}.co.jp",
                phone=f"03-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}",
                address=f"{stem}市 {rng.randint(1, 9)}-{rng.randint(1, 30)}-{rng.randint(1, 20)}",
                industry=industry,
                size=rng.choice(list(CompanySize)),
                investment_profile=rng.choice([None, *InvestmentProfile]),
                risk_tolerance=rng.randint(1, 10),
                investment_experience=f"担当: {contact} / 投資経験 {rng.randint(0, 25)} 年",
                assigned_sales_id=rep.id,
                created_by_id=rep.id,
            )
            db.session.add(customer)
            db.session.flush()
            created.append(customer)
            for m in range(rng.randint(1, 3)):
                when = now + timedelta(days=rng.randint(-60, 20), hours=rng.randint(0, 8))
                title = rng.choice(MEETING_TITLES)
                location = rng.choice(list(MEETING_PLACES))
                db.session.add(
                    Meeting(
                        customer_id=customer.id,
                        sales_id=rep.id,
                        created_by_id=rep.id,
                        title=title,
                        description=f"{contact}様と面談。ご意向を確認。",
                        scheduled_at=when,
                        location=location,
                        type=MEETING_PLACES[location],
                        status=MeetingStatus.completed if when < now else MeetingStatus.scheduled,
                        next_action=rng.choice(NEXT_ACTIONS),
                        next_action_date=when + timedelta(days=rng.randint(1, 14)),
                    )
                )
            for t in range(rng.randint(1, 3)):
                status = rng.choice(list(TaskStatus))
                db.session.add(
                    Task(
                        user_id=rep.id,
                        customer_id=customer.id,
                        created_by_id=rep.id,
                        title=f"{rng.choice(NEXT_ACTIONS)}: {customer.name}",
                        due_date=now + timedelta(days=rng.randint(-10, 14)),
                        status=status,
                        priority=rng.choice(list(TaskPriority)),
                        completed_at=now if status == TaskStatus.COMPLETED else None,
                    )
                )
            if i % 2 == 0:
                _demo_request(rng, customer, rep, manager, compliance, ApprovalStatus(list(ApprovalStatus)[(i // 2) % 4]))
            db.session.commit()
    _demo_compliance(created[:3], manager, now)
    return [(email, role) for email, _, role in DEMO_USERS]


def _demo_request(rng, customer, rep, manager, compliance, status):
    """Submit a request as `rep` and drive it to `status` through the real state machine."""
    product, risk = rng.choice(PRODUCTS)
    amount = Decimal(rng.choice([500_000, 1_000_000, 3_000_000, 5_000_000, 12_000_000, 30_000_000]))
    request = ApprovalRequest(
        customer_id=customer.id,
        product_name=product,
        product_risk=risk,
        amount=amount,
        comment=f"{customer.name}向け {product} のご提案",
    )
    approvals.submit(request, rep, requested_at=utcnow() - timedelta(days=rng.randint(1, 20), hours=rng.randint(0, 8)))
    db.session.commit()
    two_steps = len(request.steps) == 2
    if status == ApprovalStatus.APPROVED:
        approvals.approve(request.id, manager, "問題ありません")
        if two_steps:
            approvals.approve(request.id, compliance, "適合性を確認しました")
    elif status == ApprovalStatus.REJECTED:
        if two_steps and rng.random() < 0.5:
            approvals.approve(request.id, manager, "営業判断として妥当")
            approvals.reject(request.id, compliance, "適合性の観点からリスクが高すぎます")
        else:
            approvals.reject(request.id, manager, "顧客の投資経験に対してリスクが高すぎます")
    elif status == ApprovalStatus.RECALLED:
        approvals.recall(request.id, rep, "顧客のご都合により取り下げ")
    elif two_steps and rng.random() < 0.5:
        # Pending at the compliance step, so the compliance inbox has work too.
        approvals.approve(request.id, manager, "コンプライアンス確認をお願いします")
    return request


def _demo_compliance(customers, manager, now):
    """What the Compliance screens are for: customer cards (one current, one stale, one of an
    83-year-old), notes with prohibited phrases, and a complex product proposed to the elderly customer."""
    if len(customers) < 3:
        return
    current, stale, elderly = customers
    body = {
        "occupation": "会社役員", "investmentPurpose": "growth", "investmentHorizon": "long", "incomeBand": "10m_20m",
        "financialAssetsBand": "30m_100m", "sourceOfFunds": "役員報酬・貯蓄",
        "experience": {"stocks": {"years": 10, "frequency": "monthly"}, "investment_trusts": {"years": 5, "frequency": "quarterly"}},
        "riskTolerance": 7, "changeReason": "初回ヒアリング",
    }
    with acting_as(manager):
        cards.save_version(current.id, manager, {**body, "dateOfBirth": "1972-04-10"})
        old = cards.save_version(stale.id, manager, {**body, "dateOfBirth": "1965-09-01"})
        old.reviewed_at = now - timedelta(days=430)  # reviewed over a year ago: due for review
        cards.save_version(elderly.id, manager, {**body, "dateOfBirth": "1943-02-15", "riskTolerance": 8,
                                                 "changeReason": "ご家族同席で確認"})
        db.session.commit()
    rep = db.session.get(User, elderly.assigned_sales_id)
    with acting_as(rep):
        for customer, note in ((current, "新商品について、この銘柄は必ず儲かりますとお伝えした。"),
                               (elderly, "元本保証に近い商品としてご案内。ご家族も同席。")):
            db.session.add(Meeting(
                customer_id=customer.id, sales_id=customer.assigned_sales_id, created_by_id=customer.assigned_sales_id,
                title="新商品のご提案", description=note, scheduled_at=now - timedelta(days=3),
                location="貴社会議室", type=MeetingType.visit, status=MeetingStatus.completed,
            ))
        db.session.commit()
        product = db.session.execute(sa.select(Product).where(Product.code == "DEMO-SB")).scalar_one_or_none()
        if product is None:
            product = Product(code="DEMO-SB", name="仕組債 (日経平均連動)", risk_rating=5,
                              product_type=ProductType.structured_bonds, complex=True, principal_protected=False,
                              min_experience_years={"structured_bonds": 1}, suitable_purposes=["growth"])
            db.session.add(product)
            db.session.flush()
        request = ApprovalRequest(customer_id=elderly.id, product_id=product.id, amount=Decimal(3_000_000),
                                  comment="ご高齢のお客様: 役席者の事前承認をお願いします")
        approvals.submit(request, rep)
        db.session.commit()
